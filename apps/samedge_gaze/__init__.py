"""AR gaze-point demo (issue 6, in progress): gaze sources, filtering and fixation detection.

Built only on samedge's public API; the scheduling, rendering and `samedge demo gaze` are not written yet.
"""
