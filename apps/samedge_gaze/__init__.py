"""AR gaze-point demo (`samedge demo gaze`), built only on samedge's public API (SamPredictor).

sources (video file or camera; recorded, replayed, live LSL and mouse gaze), trace and adapters (gaze
files), one_euro and fixations (filtering, I-VT/I-DT, online I-VT), scheduler (when the encoder and the
decoder run), groundtruth (the scored synthetic sequence), demo (the loop and its outputs).
"""
