"""The LeRobot dataset layout both our reader (lerobot.py) and writer (lerobot_write.py) keep: the
versions, the v3.0 path templates and the default per-frame features (as the reference library's
`src/lerobot/datasets/utils.py` names them).

Field names were checked against huggingface/lerobot: `docs/source/lerobot-dataset-v3.mdx` (layout),
`src/lerobot/datasets/utils.py` (DEFAULT_*_PATH and LEGACY_*_PATH templates, DEFAULT_FEATURES,
`create_empty_dataset_info`, feature names [height, width, channels], scalar vs list columns in
`get_hf_features_from_features`), `src/lerobot/datasets/v30/convert_dataset_v21_to_v30.py` (episode
metadata columns, `tasks.parquet` as a DataFrame indexed by task, v2.1 jsonl files, the `fps` added to
non-video features) and `src/lerobot/datasets/video_utils.py` (`encode_video_frames` defaults,
`decode_video_frames_torchcodec` timestamps -> indices, `get_video_info` keys). Checked with pandas 3.1:
`pd.read_parquet` of our tasks.parquet gives task_index indexed by task, as LeRobot's `load_tasks` expects.
"""

VERSION = "v3.0"
LEGACY = ("v2.0", "v2.1")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES = {k: {"dtype": d, "shape": [1], "names": None} for k, d in (
    ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
    ("task_index", "int64"))}
NUMERIC = ("float32", "float64", "int32", "int64", "bool")
