"""One row of App. D: a LAM variant (or a BC baseline) trained on the collected demonstrations, its
diagnostics, and its policy's return in the distracted environment. The sweep is experiments/control.py.

A latent row (`method` = a variant `OBJECTIVE[@ENCODER]`, e.g. `lam+xexo:1`, `lam@ema`), seed k:

    1. LAM      psi_IDM, psi_FDM (models/lapo.py) with the objective on windows (I_t, I_t+k) of the
                training episodes (+ paired renders for xexo, labels of the labelled episodes for
                robust-action, DIS flow of (I, I') for robust-flow; `ema_hook` for @ema)
    2. probes   on held-out episodes: probe NMSE z -> a and NMSE(a | z, s) (s = proprio state, the
                endogenous content of o: a probe on 12,288 pixels is not fittable from these samples),
                z consistency across paired renders, xi'-swap PSNR (pixels only: the @ema FDM predicts
                features), the xi-sensitivity delta_h (Eq. 13) of the representation h = model.embed
    3. pi(z|o)  latent policy on every training frame, target z = frozen IDM(I_t, I_t+k)
    4. pi_Dec   action decoder a <- z on the labelled episodes
    5. return   pi_Dec(pi(o)) in DistractingControl under the same distractors (env's own drift)

A BC row (`bc`: the labelled episodes; `bc-all`: every training episode's labels) trains pi_BC(a|o)
and evaluates it the same way. `bc-state` trains pi_BC(a|s) on every training episode's proprio
state s (the decoder's MLP, s in place of z, standardized by those episodes' mean and std): the ceiling a perfect encoder of the frames could
reach. The `expert` row is the return of the demonstrations themselves.

`frame_stack` N: every o above (the LAM's, pi(z|o)'s, pi_BC(a|o)'s, in training and in the env) is
the last N frames channel-stacked (data/windows.py, envs/control_eval.py): one frame shows cheetah-
run's positions, not its velocities. The LAM reads (o_t, o_t+k) as stacks; its FDM predicts the
next stack.
Everything is a function of (task, seed): model init `torch.manual_seed(seed)` per stage, minibatch
streams from the seed, labelled episodes from `data.sampling.labelled_episodes`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import torch

from exolam.data.flow import flow_dim
from exolam.data.sampling import labelled_episodes
from exolam.data.windows import WindowDataset, WindowSource, collate
from exolam.envs.control import ControlConfig
from exolam.envs.control_eval import evaluate_policy
from exolam.errors import ConfigError
from exolam.metrics.encoder import xi_sensitivity, z_consistency
from exolam.metrics.latent import probe_nmse, probe_nmse_given_o
from exolam.metrics.pixel import swap_psnr
from exolam.models.lapo import ENCODERS, LapoLAM, LapoLAMConfig, ema_hook
from exolam.models.policy import (ActionDecoder, BCObjective, ConvPolicy, DecoderConfig, DecoderObjective,
                                  LatentPolicyObjective, PolicyConfig, bc_policy, latent_action_policy)
from exolam.objectives import Objective, format_objective, parse_objective, sq_err
from exolam.runs.files import to_jsonable
from exolam.train import engine
from exolam.train.engine import TrainConfig

IMAGE, ALT, STATE, ACTION = "observation.image", "observation.image_alt", "observation.state", "action"
BASELINES = ("bc", "bc-all", "bc-state", "expert")
METRICS = ["return", "probe_nmse", "probe_nmse_given_s", "consistency_rel", "consistency_mse", "delta_h_rel",
           "delta_h_mean", "psnr_recon", "gap_swap", "loss_lam_test", "loss_train"]


def parse_variant(text: str, field: str = "variants") -> tuple[str, str]:
    """'lam+xexo:1@ema' -> (normalized objective, encoder); the encoder defaults to pixels."""
    objective, _, encoder = text.partition("@")
    encoder = encoder or "pixels"
    if encoder not in ENCODERS:
        raise ConfigError(f"{field}: encoder '{encoder}' in '{text}' is not one of {', '.join(ENCODERS)}")
    return format_objective(parse_objective(objective, field)), encoder


def variant_name(text: str) -> str:
    objective, encoder = parse_variant(text)
    return objective if encoder == "pixels" else f"{objective}@{encoder}"


@dataclasses.dataclass  # not frozen: Fabric's spawn launcher rebuilds dataclasses passed to workers
class ControlTask:
    method: str
    label_fraction: float
    seed: int
    data: str
    env: ControlConfig
    n_train: int
    n_episodes: int
    model: LapoLAMConfig
    train: TrainConfig
    policy: PolicyConfig
    policy_train: TrainConfig
    decoder: DecoderConfig
    decoder_train: TrainConfig
    bc_train: TrainConfig
    eval_episodes: int
    eval_steps: int
    probe_windows: int
    frame_gap: int = 1
    device: str = "cpu"
    frame_stack: int = 1

    @property
    def config(self) -> str:
        return f"method={self.method}|label_fraction={self.label_fraction:g}"

    @property
    def labelled(self) -> list[int]:
        return labelled_episodes(self.n_train, self.label_fraction, self.seed)

    def folder(self, root: str | Path, stage: str, shared: bool = False) -> Path:
        """Checkpoint folder of a stage; `shared` stages do not depend on the label fraction."""
        key = self.method if shared else f"{self.method}-lf{self.label_fraction:g}"
        return Path(root) / (re.sub(r"[^A-Za-z0-9._=+,@-]", "_", key) + f"-seed{self.seed}") / stage


def _fit(task: ControlTask, model, objective, source, train: TrainConfig, ckpt: Path, name: str, hooks=()) -> float:
    """Train (resume, or load when finished) one stage's model in this process; its tail training loss."""
    spec = {"stage": name, "model": to_jsonable(getattr(model, "cfg", None)),
            "objective": format_objective(objective.terms), "data": source.spec(),
            "train": {k: v for k, v in to_jsonable(train).items() if k not in ("save_every", "log_every")},
            "seed": task.seed, "device": torch.device(task.device).type}
    return engine.train_or_resume(train, task.device, ckpt, spec, _fit_here, model, objective, source, train, spec,
                                  ckpt, name, hooks)  # Config.validate keeps devices at 1: the model is this one


def _fit_here(fabric, model, objective, source, train: TrainConfig, spec: dict, ckpt: Path, name: str, hooks) -> float:
    result = engine.fit(fabric, model, objective, source, train, spec=spec, ckpt=ckpt, hooks=hooks,
                        metrics=ckpt.parent / f"{name}.jsonl", desc=name)
    return result.loss_train  # a finished checkpoint resumes at its end, with its loss tail


def _source(task: ControlTask, fields: dict, episodes, train: TrainConfig, **kw) -> WindowSource:
    ds = WindowDataset(task.data, fields, frame_gap=task.frame_gap, image_size=task.env.image_size, episodes=episodes,
                       frame_stack=task.frame_stack, **kw)
    return WindowSource(ds, task.seed, train.steps, train.batch_size, device=task.device)


def train_lam(task: ControlTask, root: Path) -> tuple[LapoLAM, float]:
    objective_text, encoder = parse_variant(task.method)
    terms = {t.name for t in parse_objective(objective_text)}
    fields = {"o": IMAGE, "a": ACTION} | ({"o_alt": ALT} if "xexo" in terms else {})
    labelled = task.labelled if "robust-action" in terms else None
    torch.manual_seed(task.seed)
    model = LapoLAM(dataclasses.replace(task.model, encoder=encoder, image_size=task.env.image_size,
                                        in_channels=3 * task.frame_stack))
    objective = Objective(objective_text, model.d_z, {"action": 6, "flow": flow_dim()})
    source = _source(task, fields, range(task.n_train), task.train, labelled_episodes=labelled,
                     flow="robust-flow" in terms)
    loss = _fit(task, model, objective, source, task.train, task.folder(root, "lam", shared=labelled is None), "lam",
                hooks=[ema_hook] if encoder == "ema" else ())
    return model.eval(), loss


def _windows(task: ControlTask, episodes, n: int, seed: int):
    """Up to n windows of `episodes` (a seeded sample), in memory, with paired views and state."""
    ds = WindowDataset(task.data, {"o": IMAGE, "o_alt": ALT, "a": ACTION, "s": STATE}, frame_gap=task.frame_gap,
                       image_size=task.env.image_size, episodes=episodes, frame_stack=task.frame_stack)
    idx = np.random.default_rng(seed).permutation(len(ds))[:n] if len(ds) > n else np.arange(len(ds))
    return collate([ds[int(i)] for i in sorted(idx)])


@torch.no_grad()
def diagnose(model: LapoLAM, task: ControlTask) -> dict:
    """Step 2 of the module doc, on held-out episodes (probes fitted on training windows)."""
    dev = next(model.parameters()).device
    train = _windows(task, range(task.n_train), task.probe_windows, task.seed).to(dev)
    test = _windows(task, range(task.n_train, task.n_episodes), task.probe_windows, task.seed + 1).to(dev)
    z_tr, z_te = (torch.cat([model.encode(b.o[i:i + 256], b.o_next[i:i + 256]) for i in range(0, len(b), 256)])
                  for b in (train, test))
    row = {"probe_nmse": probe_nmse(z_tr, train.a, z_te, test.a),
           "probe_nmse_given_s": probe_nmse_given_o(z_tr, train.s.double(), train.a, z_te, test.s.double(), test.a)}
    cons = z_consistency(model, test)
    row["consistency_rel"], row["consistency_mse"] = cons["relative"], cons["mse"]
    sens = xi_sensitivity(model.embed, test.o, test.o_alt)
    row["delta_h_rel"], row["delta_h_mean"] = sens["relative"], sens["mean"]
    if model.cfg.encoder == "pixels":
        sw = swap_psnr(model, test)
        row["psnr_recon"], row["gap_swap"] = sw["recon"], sw["gap_swap"]
    else:
        row["psnr_recon"] = row["gap_swap"] = math.nan
    pred = torch.cat([model.decode(test.o[i:i + 256], z_te[i:i + 256]) for i in range(0, len(test), 256)])
    row["loss_lam_test"] = float(sq_err(pred, model.fdm_target(test.o_next)))
    return row


def _returns(task: ControlTask, act, observe: str = "image") -> float:
    returns = evaluate_policy(task.env, act, task.eval_episodes, task.seed, task.eval_steps, task.frame_stack, observe)
    return float(np.mean(returns))


def run_latent(task: ControlTask, root: Path) -> dict:
    model, loss_train = train_lam(task, root)
    row = {**diagnose(model, task), "loss_train": loss_train}
    torch.manual_seed(task.seed)
    pi = ConvPolicy(dataclasses.replace(task.policy, image_size=task.env.image_size, out_dim=model.d_z,
                                        in_channels=3 * task.frame_stack))
    _fit(task, pi, LatentPolicyObjective(model), _source(task, {"o": IMAGE}, range(task.n_train), task.policy_train),
         task.policy_train, task.folder(root, "policy", shared="robust-action" not in task.method), "policy")
    torch.manual_seed(task.seed)
    dec = ActionDecoder(dataclasses.replace(task.decoder, d_z=model.d_z))
    labelled = task.labelled
    _fit(task, dec, DecoderObjective(model), _source(task, {"o": IMAGE, "a": ACTION}, labelled, task.decoder_train,
                                                   labelled_episodes=labelled),
         task.decoder_train, task.folder(root, "decoder"), "decoder")
    row["return"] = _returns(task, latent_action_policy(pi.eval(), dec.eval()))
    return row


def run_bc(task: ControlTask, root: Path) -> dict:
    episodes = task.labelled if task.method == "bc" else list(range(task.n_train))
    torch.manual_seed(task.seed)
    if task.method == "bc-state":  # pi_BC(a|s): the decoder's MLP on the proprio state, no frames
        from exolam.data.lerobot import open_dataset

        ds = open_dataset(task.data)
        s = torch.from_numpy(np.concatenate([ds.column(STATE, e) for e in episodes]))
        bc = ActionDecoder(dataclasses.replace(task.decoder, d_z=s.shape[1], standardize=True)).standardize_by(s)
        fields = {"o": STATE, "a": ACTION}
        task = dataclasses.replace(task, frame_stack=1)  # a state is not stacked
    else:
        bc = ConvPolicy(dataclasses.replace(task.policy, image_size=task.env.image_size, out_dim=6,
                                            in_channels=3 * task.frame_stack))
        fields = {"o": IMAGE, "a": ACTION}
    loss = _fit(task, bc, BCObjective(), _source(task, fields, episodes, task.bc_train, labelled_episodes=episodes),
                task.bc_train, task.folder(root, "bc"), "bc")
    observe = "state" if task.method == "bc-state" else "image"
    return {"return": _returns(task, bc_policy(bc.eval()), observe), "loss_train": loss}


def expert_return(task: ControlTask) -> dict:
    """The demonstrations' own mean episode return (all collected episodes)."""
    from exolam.data.lerobot import open_dataset

    ds = open_dataset(task.data)
    return {"return": float(np.mean([ds.column("next.reward", e).sum() for e in range(len(ds.episode_lengths))]))}


def shares_lam(task: ControlTask) -> bool:
    """Whether the task's LAM and latent policy are the same for every label fraction (one sweep task
    then runs all its fractions in a row, so no two processes train one checkpoint)."""
    return task.method not in BASELINES and "robust-action" not in task.method


def run_group(tasks: list[ControlTask], ckpt_root: str) -> list[dict]:
    """The rows of tasks that share their LAM (`shares_lam`), in order."""
    return [row for t in tasks for row in run_task(t, ckpt_root)]


def run_task(task: ControlTask, ckpt_root: str) -> list[dict]:
    """The results.csv row of one task (module doc), on 1 torch thread on CPU."""
    cpu = torch.device(task.device).type == "cpu"
    threads = torch.get_num_threads()
    if cpu:
        torch.set_num_threads(1)
    try:
        if task.method == "expert":
            row = expert_return(task)
        elif task.method in BASELINES:
            row = run_bc(task, Path(ckpt_root))
        else:
            row = run_latent(task, Path(ckpt_root))
    finally:
        torch.set_num_threads(threads)
    return [{"config": task.config, "seed": task.seed, "method": task.method, "label_fraction": task.label_fraction,
             **{m: row.get(m, math.nan) for m in METRICS}, "device": torch.device(task.device).type}]
