"""Comparing two datasets whose video was encoded twice from the same frames (shared by the tests).

Two h264 encodings of the same frames are not always the same bitstream: libx264 here gives another
one in about 1 of 50-100 encodes of the same clip in one process (identical visible YUV input; none in
400 with x264-params mbtree=0 or asm=0). So a test whose point is that two runs produce the same data
compares the raw frames handed to the encoder exactly (`record_writes`, `assert_same_episodes`) and
the decoded frames only within DECODED_TOL (`assert_decoded_close`).

DECODED_TOL: per-episode mean |difference| between decodings of such bitstreams of 32 px control
clips measured up to 1.2 of 255 levels (max 59, up to 30% of elements), while another episode's frames
differ by 6.7 or more. A frame shifted by one step (1.1-2.1 levels there) cannot be told from codec
noise after decoding; the exact comparison before encoding catches it.
"""

import numpy as np

DECODED_TOL = 3.0


def record_writes(mp, module) -> list:
    """Patch `module.write_dataset` (with pytest's MonkeyPatch `mp`) to keep the episodes it is handed
    (raw arrays, before encoding), one list per call; returns the list of those lists."""
    handed, real = [], module.write_dataset

    def write(root, episodes, *args, **kwargs):
        eps = [dict(ep) for ep in episodes]
        handed.append(eps)
        return real(root, iter(eps), *args, **kwargs)

    mp.setattr(module, "write_dataset", write)
    return handed


def assert_same_episodes(want: list, got: list) -> None:
    """Exact: every array of every episode handed to the writer (our code makes each bit of these)."""
    assert len(want) == len(got)
    for e, (a, b) in enumerate(zip(want, got)):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} episode {e} (before encoding)")


def assert_decoded_close(a, b, key: str, episodes: int) -> None:
    """Decoded frames of two encodings of the same frames: within DECODED_TOL on average per episode,
    while another episode's frames are not (the tolerance still catches a wrong episode)."""
    for e in range(episodes):
        fa = a.frames(key, e).astype(int)
        diff = np.abs(fa - b.frames(key, e).astype(int)).mean()
        assert diff < DECODED_TOL, f"{key} episode {e}: decoded frames differ by {diff:.2f} levels on average"
        other = b.frames(key, (e + 1) % episodes).astype(int)
        n = min(len(fa), len(other))
        assert np.abs(fa[:n] - other[:n]).mean() > DECODED_TOL, f"{key}: episodes {e} and {(e + 1) % episodes} alike"
