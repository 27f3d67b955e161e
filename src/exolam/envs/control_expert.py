"""The expert that collects App. D's demonstrations: stable-baselines3 on proprioceptive state.

The paper "use[s] the pretrained PPO agent" (App. D) without naming it; we train our own. SB3 runs
only here and only at training time (extra `expert`); the result is exported to a plain MLP that
needs torch alone:

    OUT/expert/model.safetensors   the deterministic actor's weights + observation normalization
    OUT/expert/config.json         {"format": "exolam-expert", "algo", "env", "layers", "activation",
                                    "squash", "steps", "seed", "eval": {returns, mean, std}}
    OUT/.work/                     SB3 checkpoints (model, VecNormalize, SAC's replay buffer)

Deterministic action (what collection executes), with o the 17-dim state of `DistractingControl`
(`ts.observation` values concatenated in dm_control's order, cheetah: position 8 + velocity 9):
    x = clip((o - mean) / sqrt(var + 1e-8), -10, 10)   (identity for SAC: mean 0, var 1 - 1e-8)
    h = act(W_i h + b_i) over the hidden layers;  a = squash(W_out h + b_out)
SAC: act = ReLU, squash = tanh (SB3's squashed Gaussian mean); PPO: act = Tanh, squash = clip to
[-1, 1], obs normalized by VecNormalize's running statistics.

Algorithms (`--algo`): `sac` (default; SB3 defaults, 256x256, from step 10k) reaches the return goal
in a few hundred thousand steps on one CPU thread (~72 steps/s measured: shared/notes/platform.md);
`ppo` (the paper's choice) runs ~1,500 steps/s but needs millions of steps. Training resumes from
the last checkpoint in OUT/.work (every `save_every` steps): the resumed run continues the same
learning but is not bit-identical to an uninterrupted one (SB3 restarts its environments). With
`steps` at or below the checkpoint's step nothing trains: the last checkpoint is exported and
evaluated (an interim expert, e.g. while a long run goes on in another process; its config.json
records the step it reached).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from exolam.envs.suite import check_task, load_task
from exolam.errors import ConfigError, check_positive_int
from exolam.runs.files import atomic_write, read_json

FORMAT = "exolam-expert"
ALGOS = ("sac", "ppo")
EXPERT, WORK = "expert", ".work"
PACKAGED = Path(__file__).resolve().parent.parent / "assets" / "cheetah-run-expert"


@dataclasses.dataclass
class ExpertConfig:
    """One expert training run (SB3 hyperparameters are its defaults unless named here)."""

    domain: str = "cheetah"
    """dm_control domain"""
    task: str = "run"
    """dm_control task"""
    algo: str = "sac"
    """sac or ppo (stable-baselines3)"""
    steps: int = 500_000
    """environment steps"""
    seed: int = 0
    """SB3 and environment seed"""
    save_every: int = 25_000
    """steps between resumable SB3 checkpoints"""
    eval_episodes: int = 10
    """episodes of the final evaluation (recorded with the exported expert)"""
    learning_starts: int = 10_000  # SAC: uniform random actions before the first update
    n_envs: int = 8  # PPO: parallel environments (DummyVecEnv, one process)

    def validate(self) -> "ExpertConfig":
        if self.algo not in ALGOS:
            raise ConfigError(f"algo = {self.algo!r} must be one of {', '.join(ALGOS)}")
        for name in ("steps", "save_every", "eval_episodes", "n_envs"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed = {self.seed!r} must be an integer >= 0")
        if isinstance(self.learning_starts, bool) or not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ConfigError(f"learning_starts = {self.learning_starts!r} must be an integer >= 0")
        check_task(self.domain, self.task)
        return self


def flat_state(ts) -> np.ndarray:
    """The proprioceptive state, exactly as `DistractingControl` returns it (float64, flat)."""
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in ts.observation.values()])


def make_state_env(domain: str, task: str, seed: int):
    """gymnasium view of a dm_control task on its flat state: truncated (never terminated) at the
    task's time limit, so SB3 bootstraps through it."""
    import gymnasium

    class StateEnv(gymnasium.Env):
        metadata = {"render_modes": []}

        def __init__(self):
            self._env = load_task(domain, task, seed)
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            spec = self._env.action_spec()
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
            self.action_space = gymnasium.spaces.Box(spec.minimum.astype(np.float32),
                                                     spec.maximum.astype(np.float32), dtype=np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            if seed is not None:
                self._env.task.random.seed(seed)
            return flat_state(self._env.reset()).astype(np.float32), {}

        def step(self, action):
            ts = self._env.step(np.asarray(action, dtype=np.float64))
            return flat_state(ts).astype(np.float32), float(ts.reward or 0.0), False, bool(ts.last()), {}

    return StateEnv()


class Expert(torch.nn.Module):
    """The exported deterministic actor (module doc); `expert(state, rng) -> action` for collection."""

    def __init__(self, layers: list[int], activation: str, squash: str):
        super().__init__()
        self.layers, self.activation, self.squash = list(layers), activation, squash
        self.net = torch.nn.ModuleList(torch.nn.Linear(i, o) for i, o in zip(layers[:-1], layers[1:]))
        self.register_buffer("obs_mean", torch.zeros(layers[0], dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(layers[0], dtype=torch.float64) - 1e-8)

    @torch.no_grad()
    def act(self, state: np.ndarray) -> np.ndarray:
        x = (torch.as_tensor(state, dtype=torch.float64) - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)
        h = x.clamp(-10.0, 10.0).float()
        act = torch.relu if self.activation == "relu" else torch.tanh
        for i, lin in enumerate(self.net):
            h = lin(h)
            if i < len(self.net) - 1:
                h = act(h)
        a = torch.tanh(h) if self.squash == "tanh" else h.clamp(-1.0, 1.0)
        return a.numpy().astype(np.float32)

    def __call__(self, state: np.ndarray, rng=None) -> np.ndarray:  # the collector's policy(state, rng)
        return self.act(state)


def _export(model, algo: str, vecnorm) -> Expert:
    """Copy SB3's deterministic actor into an `Expert`."""
    pol = model.policy
    if algo == "sac":
        mlp, head, act, squash = pol.actor.latent_pi, pol.actor.mu, "relu", "tanh"
    else:
        mlp, head, act, squash = pol.mlp_extractor.policy_net, pol.action_net, "tanh", "clip"
    lins = [m for m in mlp if isinstance(m, torch.nn.Linear)] + [head]
    e = Expert([lins[0].in_features] + [m.out_features for m in lins], act, squash)
    for dst, src in zip(e.net, lins):
        dst.load_state_dict(src.state_dict())
    if vecnorm is not None:
        e.obs_mean.copy_(torch.as_tensor(vecnorm.obs_rms.mean))
        e.obs_var.copy_(torch.as_tensor(vecnorm.obs_rms.var))
    return e


def evaluate(expert, domain: str, task: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of `expert` over `episodes` episodes (reset seeds seed*10007 + e)."""
    env = load_task(domain, task, seed=0)
    out = []
    for e in range(episodes):
        env.task.random.seed(10_007 * seed + e)
        ts, total = env.reset(), 0.0
        while not ts.last():
            ts = env.step(expert(flat_state(ts)))
            total += float(ts.reward or 0.0)
        out.append(total)
    return out


def save_expert(expert: Expert, path: Path, meta: dict) -> None:
    """Write the folder atomically (temporary name, then rename)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in expert.state_dict().items()}, str(tmp / "model.safetensors"))
    cfg = {"format": FORMAT, "layers": expert.layers, "activation": expert.activation, "squash": expert.squash, **meta}
    atomic_write(tmp / "config.json", json.dumps(cfg, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_expert(path=None) -> Expert:
    """The expert in folder `path` (default: the one shipped with exolam); one line if it is not one."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else PACKAGED
    fix = "train one with `exolam control train-expert` or pass the folder it wrote"
    cfg = read_json(path / "config.json", fix)
    if cfg.get("format") != FORMAT or not (path / "model.safetensors").exists():
        raise ConfigError(f"{path}: not an exolam expert folder (config.json with format {FORMAT!r} and "
                          f"model.safetensors expected; train one with `exolam control train-expert`)")
    e = Expert(cfg["layers"], cfg["activation"], cfg["squash"])
    try:
        e.load_state_dict(load_file(str(path / "model.safetensors")))
    except Exception as err:  # noqa: BLE001 - truncated or mismatched weights become one line
        raise ConfigError(f"{path / 'model.safetensors'}: cannot be loaded into the expert its config.json "
                          f"describes ({type(err).__name__})") from None
    e.meta = cfg
    return e


def _build(cfg: ExpertConfig, work: Path):
    """The SB3 model and its VecEnv, restored from the last checkpoint in `work` when there is one."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    n = 1 if cfg.algo == "sac" else cfg.n_envs
    venv = DummyVecEnv([lambda i=i: make_state_env(cfg.domain, cfg.task, cfg.seed * 1000 + i) for i in range(n)])
    if cfg.algo == "ppo":
        venv = VecNormalize.load(str(work / "vecnormalize.pkl"), venv) if (work / "vecnormalize.pkl").exists() \
            else VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.99)
    venv.seed(cfg.seed)
    if (work / "model.zip").exists():
        cls = SAC if cfg.algo == "sac" else PPO
        model = cls.load(str(work / "model.zip"), env=venv, device="cpu")
        if cfg.algo == "sac" and (work / "replay_buffer.pkl").exists():
            model.load_replay_buffer(str(work / "replay_buffer.pkl"))
        return model, venv
    if cfg.algo == "sac":
        model = SAC("MlpPolicy", venv, learning_starts=cfg.learning_starts, seed=cfg.seed, device="cpu", verbose=0)
    else:
        model = PPO("MlpPolicy", venv, n_steps=512, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.99,
                    gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, max_grad_norm=0.5, seed=cfg.seed, device="cpu",
                    policy_kwargs={"log_std_init": -1.0, "net_arch": {"pi": [256, 256], "vf": [256, 256]}},
                    verbose=0)
    return model, venv


def train_expert(cfg: ExpertConfig, out, log=print) -> Path:
    """Train (or resume) to `cfg.steps` environment steps; export, evaluate and return OUT/expert."""
    cfg.validate()
    out = Path(out)
    work, dest = out / WORK, out / EXPERT
    spec = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("steps", "save_every", "eval_episodes")}
    if (work / "spec.json").exists() and read_json(work / "spec.json", f"remove {work}") != spec:
        raise ConfigError(f"{work}: holds a training run with another configuration; use another --out")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write(work / "spec.json", json.dumps(spec, indent=2) + "\n")
    model, venv = _build(cfg, work)
    log(f"[expert] {cfg.algo} on {cfg.domain}-{cfg.task}: step {model.num_timesteps} of {cfg.steps}")
    while model.num_timesteps < cfg.steps:
        chunk = min(cfg.save_every, cfg.steps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False)
        model.save(str(work / "model.zip"))
        if cfg.algo == "sac":
            model.save_replay_buffer(str(work / "replay_buffer.pkl"))
        else:
            venv.save(str(work / "vecnormalize.pkl"))
        probe = evaluate(_export(model, cfg.algo, venv if cfg.algo == "ppo" else None), cfg.domain, cfg.task, 1,
                         cfg.seed + 1)
        log(f"[expert] step {model.num_timesteps}: return {probe[0]:.1f} (1 episode)")
    expert = _export(model, cfg.algo, venv if cfg.algo == "ppo" else None)
    returns = evaluate(expert, cfg.domain, cfg.task, cfg.eval_episodes, cfg.seed + 2)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    save_expert(expert, dest, {"algo": cfg.algo, "env": f"{cfg.domain}-{cfg.task}", "steps": int(model.num_timesteps),
                               "seed": cfg.seed, "eval": {"returns": [round(r, 2) for r in returns],
                                                          "mean": round(mean, 2), "std": round(std, 2)}})
    log(f"[expert] {dest}: return {mean:.1f} +- {std:.1f} over {len(returns)} episodes")
    return dest

