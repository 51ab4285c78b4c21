"""Assets owned by bureaus: cameras, street lights, road segments, drains…"""
