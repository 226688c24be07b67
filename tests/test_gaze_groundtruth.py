"""The gaze demo's ground-truth mode: real photos under synthetic head motion with exact masks, gaze with
real EyeLink fixation timing and jitter, and the demo scored against both."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("imgviz")


@pytest.fixture(scope="module")
def sequence():
    from samedge_gaze.groundtruth import GroundTruthSequence
    return GroundTruthSequence()


def test_sequence_is_deterministic_and_masks_move_with_the_photo(sequence):
    from samedge_gaze.groundtruth import GroundTruthConfig, GroundTruthSequence
    again = GroundTruthSequence()
    assert np.array_equal(sequence.frame(37), again.frame(37)) and np.array_equal(sequence.trace.x, again.trace.x,
                                                                                 equal_nan=True)
    other = GroundTruthSequence(GroundTruthConfig(seed=1))
    assert not np.array_equal(sequence.frame(37), other.frame(37))  # the seed changes the head motion
    frame0, frame20 = sequence.frame(0), sequence.frame(20)
    assert frame0.shape == (480, 640, 3) and np.abs(frame0.astype(int) - frame20).mean() > 3  # the head moves
    cut = sequence.frames_per_scene
    assert sequence.scene_of(cut - 1) == 0 and sequence.scene_of(cut) == 1
    for g in sequence.targets:  # the looked-at point stays on its instance while the head moves
        for t in (g.t0, (g.t0 + g.t1) / 2, g.t1):
            frame = min(int(t * sequence.fps), sequence.n_frames - 1)
            x, y = sequence._project(frame / sequence.fps, g.anchor)
            assert sequence.instance_mask(frame, g.instance)[int(round(y)), int(round(x))]


def test_gaze_has_real_fixation_timing_and_is_detected_on_target(sequence):
    from samedge_gaze.fixations import ivt
    from samedge_gaze.groundtruth import _real_fixations
    real = {round(d, 6) for d, _, _ in _real_fixations()}
    assert len(sequence.targets) >= 8 and all(round(g.t1 - g.t0, 6) in real for g in sequence.targets)
    assert len({g.scene for g in sequence.targets}) == 2
    found = ivt(sequence.trace, sequence.ppd)
    matched = 0
    for g in sequence.targets:
        best = max(found, key=lambda f: min(f.end, g.t1) - max(f.start, g.t0))
        overlap = min(best.end, g.t1) - max(best.start, g.t0)
        iou = overlap / (max(best.end, g.t1) - min(best.start, g.t0))
        frame = min(int((best.start + best.end) / 2 * sequence.fps), sequence.n_frames - 1)
        inside = sequence.instance_mask(frame, g.instance)[int(best.y), int(best.x)]
        matched += iou >= 0.5 and inside
    assert matched / len(sequence.targets) >= 0.9


def test_demo_ground_truth_mode_scores_against_masks_and_the_fp32_reference(tiny_bundle, tmp_path):
    from samedge.cli import main
    import json
    out = tmp_path / "gt"
    assert main(["demo", "gaze", "--bundle", str(tiny_bundle), "--out", str(out), "--ground-truth",
                 "--backend", "onnxruntime", "--max-frames", "75", "--reference-frames", "5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    gt = summary["ground_truth"]
    # real time, as from a camera: frames the loop could not keep up with are dropped, and count as played
    assert summary["frames"] + summary["frames_dropped"] == 75 and gt["frames"] == 75
    assert summary["frames"] >= 25 and "GROUND TRUTH" in summary["gaze"]
    assert gt["targets"] >= 2 and gt["targets_segmented"] >= 1
    assert gt["fixation_onsets_on_target"] == 1.0  # detected fixations land on the instance looked at
    hits = gt["hit_rate"] * gt["targets"]  # a whole number of targets, never more than were segmented
    assert hits == pytest.approx(round(hits)) and 0 <= round(hits) <= gt["targets_segmented"]
    assert 0.0 < gt["mask_iou_vs_ground_truth_mean"] < 1.0  # random weights: masks overlap the truth, never match it
    ref = gt["reference"]
    assert 1 <= ref["frames"] <= 5 and ref["backend"] == "onnxruntime fp32"
    # this bundle on ONNX Runtime *is* the fp32 reference: a fresh decode must agree exactly, and what the
    # demo showed may differ only through scheduling (older embedding, the mask prior)
    assert ref["fresh_vs_reference_iou_mean"] == 1.0
    assert 0.0 <= ref["shown_vs_reference_iou_min"] <= ref["shown_vs_reference_iou_mean"] <= 1.0


def test_score_ignores_an_onset_newer_than_the_frame_on_screen(sequence):
    """A gaze sample can arrive while the last frame of the previous scene is still shown (found by the
    quickstart: it indexed scene 0's masks with a scene 1 instance)."""
    from samedge_gaze.demo import GroundTruthScore
    from samedge_gaze.fixations import Fixation
    score = GroundTruthScore(sequence, reference_frames=0, frames=sequence.n_frames)
    later = next(g for g in sequence.targets if g.scene == 1)
    x, y = sequence._project(later.t0, later.anchor)
    score.on_onset(sequence.frames_per_scene - 1, later.t0 + 0.07, Fixation(later.t0, later.t0 + 0.07, x, y, 20))
    assert score.onsets_on_target == []
    frame = int(later.t0 * sequence.fps) + 3
    x, y = sequence._project(frame / sequence.fps, later.anchor)
    score.on_onset(frame, later.t0 + 0.07, Fixation(later.t0, later.t0 + 0.07, x, y, 20))
    assert score.onsets_on_target == [True]


def test_a_bad_reference_bundle_fails_before_the_run(tiny_bundle, tmp_path, capsys):
    from samedge.cli import main
    code = main(["demo", "gaze", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "gt"), "--ground-truth",
                 "--backend", "onnxruntime", "--max-frames", "3", "--reference-bundle", str(tmp_path / "none")])
    assert code != 0 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "gt" / "summary.json").exists()
