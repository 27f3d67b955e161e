"""`exolam label`: a copy of a LeRobot dataset with the latent action of every frame (pseudo-action labels).

    latent_action[t]           float32 [d_z]   z_t = IDM(o_t, o_{t+k}), k = the checkpoint's frame gap,
                                               o the checkpoint's camera preprocessed exactly as in
                                               training (resized to its image size; data/windows.py);
                                               a VQ LAM gives the quantized code vector e_k
    latent_action_is_valid[t]  bool            False for the last k frames of each episode: there is
                                               no o_{t+k}, so z_t is not defined and is stored as zeros
    latent_action_code[t]      int64           VQ LAM only: the code index k (-1 where not valid)

A LapoLAM on a frozen pretrained encoder (`exolam train --encoder SPEC`) is rebuilt by `exolam.load` from
the spec's local weights path (which must still exist, with the same weights); its encoder runs once per
frame here (`LapoLAM.features` + `idm_on_features`), not once as o and again as o'.

`as_action` (`--as-action`): z is also written as `action` (float32 [d_z]), each episode's last k frames
holding its last valid z, so a LeRobot policy reads pseudo-actions where it reads actions; a recorded
`action` is kept, renamed `action.true` (feature, column and stats).

Rows are aligned with `frame_index`: the label of frame t describes the change from t to t + k (the
action taken at t, as LeRobot's `action` is). Downstream code (a latent policy, an action decoder)
must drop or mask the rows where `latent_action_is_valid` is False.

The copy. O is built under a temporary sibling name and renamed at the end (a failure leaves no O).
Every file of D is copied byte for byte (videos, episode metadata, tasks, other files) except the
data parquet files, which are rewritten with their original columns and schema metadata plus the
new columns, and meta/info.json (the new features, with `names` and an `info` block saying what
they mean) and meta/stats.json (stats of the new features added). The layout and codebase_version
stay those of D (v3.0 or v2.1); no video is re-encoded. meta/exolam_label.json records the
checkpoint (path, sha256 of its weights, step), D and the camera: a rerun of the same command on a
finished O returns it; any other existing O is refused. D is opened read-only and never written.

Checks (one line each): not an exolam image-LAM checkpoint; a camera D lacks; a camera whose frames
differ in size or channels from those the checkpoint was trained on; D already labelled; O inside D.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from exolam.data.layout import VERSION
from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import RunningStats, arrow_column
from exolam.data.windows import WindowDataset
from exolam.errors import ConfigError, check_positive_int
from exolam.models import checkpoint
from exolam.models.checkpoint import checkpoint_input, input_camera
from exolam.runs.files import atomic_dir, atomic_write
from exolam.runs.outdir import check_outside, claim

Z, VALID, CODE = "latent_action", "latent_action_is_valid", "latent_action_code"
ACTION, TRUE_ACTION = "action", "action.true"  # `as_action`: z becomes `action`, a recorded one is kept aside
PROVENANCE = "meta/exolam_label.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def label_dataset(ckpt, data, out, camera: str | None = None, batch_size: int = 256, device: str = "cpu",
                  log=print, as_action: bool = False) -> Path:
    """Write the labelled copy of `data` at `out` (module docstring); returns `out`.

    `ckpt`: a checkpoint folder, or the --out folder of `exolam train` (its checkpoint/ is used).
    `camera`: default the checkpoint's camera (a dataset without it is refused; `input_camera`).
    `as_action`: z is also the copy's `action` feature (the last k frames of an episode hold its last
    valid z), so a LeRobot policy trains on the pseudo-actions as it would on actions; a recorded
    `action` is kept as `action.true`.
    """
    check_positive_int("--batch-size", batch_size)
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device = {device!r} must be cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here")
    ckpt, data, out = Path(ckpt), Path(data), Path(out)
    ckpt = checkpoint.in_run(ckpt)  # a checkpoint, or the run folder of `exolam train`
    check_outside(out, {"--data": data, "--checkpoint": ckpt})  # before the checkpoint and dataset are read
    meta, inp = checkpoint_input(ckpt)
    ds = open_dataset(data)
    for key in (Z, VALID, CODE) + ((TRUE_ACTION,) if as_action else ()):
        if key in ds.features:
            raise ConfigError(f"{data}: already has a '{key}' feature (a labelled copy?); label the original dataset")
    camera = input_camera(ckpt, inp, ds, camera)
    provenance = {"checkpoint": str(ckpt.resolve()), "weights_sha256": _sha256(ckpt / "model.safetensors"),
                  "step": meta.get("step"), "data": str(data.resolve()), "camera": camera,
                  "frame_gap": inp["frame_gap"], "image_size": inp["image_size"], **({"as_action": True} if as_action
                                                                                      else {})}
    with claim(out):
        if out.exists():
            prev = out / PROVENANCE
            if prev.is_file() and _read(prev) == provenance:
                log(f"[label] {out}: already labelled by this checkpoint")
                return out
            raise ConfigError(f"--out = {out}: already exists; choose another folder (only an identical finished "
                              "label run is reused)")
        _label(ckpt, ds, out, camera, inp, provenance, batch_size, device, log)
    return out


def _label(ckpt: Path, ds, out: Path, camera: str, inp: dict, provenance: dict, batch_size: int, device: str,
           log) -> None:
    ds.validate()  # every episode's rows and video headers, before any work
    model = checkpoint.load_model(ckpt).float().to(device)
    enc = getattr(model, "frozen_encoder", None)
    on = f", frozen encoder {enc.name}" if enc is not None else ""
    log(f"[label] {type(model).__name__} (d_z {model.d_z}, frame gap {inp['frame_gap']}{on}) on '{camera}' of {ds.root} "
        f"-> {out}")
    z, valid, codes = latent_actions(model, ds, camera, inp["frame_gap"], inp["image_size"], batch_size, device)

    def build(tmp: Path) -> None:
        _write_copy(ds, tmp, z, valid, codes, provenance, held(z, valid, ds.episode_lengths)
                    if provenance.get("as_action") else None)
        open_dataset(tmp).validate()

    atomic_dir(out, build)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@torch.no_grad()
def latent_actions(model, ds, camera: str, frame_gap: int, image_size: int, batch_size: int = 256,
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(z [N, d_z] float32, valid [N] bool, codes [N] int64 or None) for every frame of `ds`, in
    episode-major order (the dataset's global `index`); frames are read and preprocessed by the
    `WindowDataset` code the LAM was trained with."""
    model.eval()
    frozen = getattr(getattr(model, "cfg", None), "encoder", None) == "frozen"  # LapoLAM on a pretrained f
    windows = WindowDataset(ds, {"o": camera}, frame_gap=frame_gap, image_size=image_size)
    lengths = ds.episode_lengths
    z = np.zeros((sum(lengths), model.d_z), np.float32)
    valid = np.zeros(sum(lengths), bool)
    codes = None
    first = 0
    for e, n in enumerate(lengths):
        for start in range(0, max(0, n - frame_gap), batch_size):
            m = min(batch_size, n - frame_gap - start)
            x = torch.stack(windows._values(camera, e, list(range(start, start + m + frame_gap)))).float().to(device)
            if frozen:  # f once per frame, not twice (as o and as o'): the pretrained encoder dominates the cost
                f = model.features(x, memo=False)
                out = model.idm_on_features(f[:m], f[frame_gap:frame_gap + m])
            else:
                out = model.idm(x[:m], x[frame_gap:frame_gap + m])
            rows = slice(first + start, first + start + m)
            z[rows], valid[rows] = out.z.float().cpu().numpy(), True
            if out.codes is not None:
                codes = np.full(len(z), -1, np.int64) if codes is None else codes
                codes[rows] = out.codes.reshape(m).cpu().numpy()
        first += n
    return z, valid, codes


def _features(ds, d_z: int, vq: bool, prov: dict) -> dict:
    fps = {"fps": ds.fps} if ds.version == VERSION else {}
    k, where = prov["frame_gap"], f"exolam label, checkpoint {prov['checkpoint']} (step {prov['step']})"
    feats = {Z: {"dtype": "float32", "shape": [d_z], "names": [f"z_{i}" for i in range(d_z)], **fps,
                 "info": {"description": f"latent action z_t = IDM(o_t, o_t+{k}) of camera '{prov['camera']}'; "
                                         f"zeros where {VALID} is False (the last {k} frame(s) of each episode)",
                          "frame_gap": k, "source": where}},
             VALID: {"dtype": "bool", "shape": [1], "names": None, **fps,
                     "info": {"description": f"False for the last {k} frame(s) of each episode (no frame t+{k}): "
                                            f"{Z} is undefined (zeros) there"}}}
    if vq:
        feats[CODE] = {"dtype": "int64", "shape": [1], "names": None, **fps,
                       "info": {"description": f"VQ code index of {Z}; -1 where {VALID} is False"}}
    return feats


def held(z: np.ndarray, valid: np.ndarray, lengths) -> np.ndarray:
    """z with each episode's invalid tail (its last k frames) holding the episode's last valid z (zeros for
    an episode without one): an action stream without the jump to zero, as LeRobot pads an episode's end."""
    out, first = z.copy(), 0
    for n in lengths:
        ok = np.flatnonzero(valid[first:first + n])
        if len(ok):
            out[first + ok[-1] + 1:first + n] = z[first + ok[-1]]
        first += n
    return out


def _write_copy(ds, tmp: Path, z, valid, codes, prov: dict, action: np.ndarray | None = None) -> None:
    root = ds.root
    files = {}  # data parquet file -> its episodes
    for e in range(len(ds.episode_lengths)):
        files.setdefault(ds._episode(e).data, []).append(e)
    rewritten = {p.relative_to(root) for p in files} | {Path("meta/info.json"), Path("meta/stats.json")}
    for src in sorted(root.rglob("*")):
        rel = src.relative_to(root)
        if src.is_file() and rel not in rewritten:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
    offsets = np.concatenate([[0], np.cumsum(ds.episode_lengths)])
    new = {Z: z, VALID: valid} | ({CODE: codes} if codes is not None else {}) | (
        {ACTION: action} if action is not None else {})
    for path, eps in files.items():
        table = pq.read_table(path)
        if "episode_index" in table.column_names:
            ep = table.column("episode_index").to_numpy().astype(np.int64)
        else:  # a v2.1 file without the column holds one episode
            ep = np.full(table.num_rows, eps[0], np.int64)
        cuts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]  # rows of an episode are contiguous, in frame order
        pos = np.arange(len(ep)) - np.repeat(cuts, np.diff(np.r_[cuts, len(ep)]))
        idx = offsets[ep] + pos
        if action is not None and ACTION in table.column_names:  # the recorded action, kept aside
            table = table.rename_columns([TRUE_ACTION if c == ACTION else c for c in table.column_names])
        for key, values in new.items():
            shape = [values.shape[1]] if values.ndim == 2 else [1]
            table = table.append_column(key, arrow_column(values[idx], shape))
        (tmp / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp / path.relative_to(root))
    info = copy.deepcopy(ds.info)
    feats = _features(ds, z.shape[1], codes is not None, prov)
    if action is not None:
        feats[ACTION] = {**feats[Z], "info": {**feats[Z]["info"], "description": f"{Z} (z_t = IDM(o_t, o_t+k)), the "
                         f"last frames of each episode holding its last valid z; the recorded action, if any, is "
                         f"'{TRUE_ACTION}'"}}
        if ACTION in info["features"]:
            info["features"][TRUE_ACTION] = info["features"].pop(ACTION)
    info["features"] = {**info["features"], **feats}
    atomic_write(tmp / "meta" / "info.json", json.dumps(info, indent=4) + "\n")
    stats_path = root / "meta" / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        if action is not None and ACTION in stats:
            stats[TRUE_ACTION] = stats.pop(ACTION)
        for key, values in new.items():
            s = RunningStats()
            s.add(values.reshape(len(values), -1).astype(np.float64))
            stats[key] = s.result(feats[key])
        atomic_write(tmp / "meta" / "stats.json", json.dumps(stats, indent=4) + "\n")
    atomic_write(tmp / PROVENANCE, json.dumps(prov, indent=2) + "\n")
