"""The discover step: frames taken in, analysed by the vision model, findings turned into
detections that open or join incidents."""
