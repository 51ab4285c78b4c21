"""Open311 GeoReport v2 for the city's citizen and 1999 apps (``routes``)."""
