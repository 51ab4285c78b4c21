"""Camera frames on the gateway's side: checking and storing images, and the worker that has
them analysed by the serving tier."""
