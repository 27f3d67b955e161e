"""What each codec costs on the CPU preset's renders: episode 0's 1,000 frames of `observation.image`
(32 px, stored losslessly, so these are the raw renders) encoded as the writer would (data/video.py
CODECS), then decoded: kB per frame, encode frames/s, and the round trip's RMS error and PSNR against
the renders, beside the mean frame-to-frame change (RMS of I_t+1 - I_t).

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/results/control-cpu-stack/analysis/codec_cost.py DATASET
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from exolam.data import video
from exolam.data.lerobot import open_dataset

ds = open_dataset(sys.argv[1])
frames = ds.frames("observation.image", 0)
x = frames.astype(np.float64) / 255
print(f"{len(frames)} frames {frames.shape[1:]}; frame-to-frame change RMS {np.sqrt(((x[1:] - x[:-1]) ** 2).mean()):.4f}")
with tempfile.TemporaryDirectory() as tmp:
    for codec in video.CODECS:
        path = Path(tmp) / f"{codec}.mp4"
        t = time.perf_counter()
        w = video.VideoFileWriter(path, codec, 100, *frames.shape[1:])
        w.write(frames)
        w.close()
        dt = time.perf_counter() - t
        back = np.stack(video.VideoReader(path, 100).read(range(len(frames)))).astype(np.float64) / 255
        rms = np.sqrt(((back - x) ** 2).mean())
        psnr = float("inf") if rms == 0 else 20 * np.log10(1 / rms)
        print(f"{codec:14s} {path.stat().st_size / len(frames) / 1024:6.2f} kB/frame  encode {len(frames) / dt:6.0f} "
              f"frames/s  round trip RMS {rms:.4f}  PSNR {psnr:.1f} dB")
