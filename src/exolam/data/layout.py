"""The LeRobot dataset layout both our reader (lerobot.py) and writer (lerobot_write.py) keep: the
versions, the v3.0 path templates and the default per-frame features (as the reference library's
`src/lerobot/datasets/utils.py` names them)."""

VERSION = "v3.0"
LEGACY = ("v2.0", "v2.1")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES = {k: {"dtype": d, "shape": [1], "names": None} for k, d in (
    ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
    ("task_index", "int64"))}
NUMERIC = ("float32", "float64", "int32", "int64", "bool")
