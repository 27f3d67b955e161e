"""Every seed derivation of exolam, in one place.

A run's seed is the only source of randomness; each consumer draws from its own `torch.Generator`
seeded by one of the functions below, never from the global RNG (except the VQ LAM's
`torch.manual_seed`, which nn.Module initialisation reads). The guarantee this buys: what a model
sees (its data, its initialisation, its minibatch stream) is a function of its own seed alone, not
of which other models share its process or ensemble. So model m of a stacked linear ensemble follows
exactly the run it would have alone (`tests/test_train_linear.py::test_ensemble_equals_one_by_one`),
and a sweep's rows do not depend on its grouping, sharding or interruption.

The constants are arbitrary distinct primes-ish offsets: streams of different consumers with the same
seed must not coincide, and streams of the same consumer with different seeds must not either.
Changing one changes every committed number; don't.
"""

from __future__ import annotations


def linear_emission(seed: int) -> int:
    """H_0 and R_xi of the linear Ex-BMDP (`envs.linear`): independent of alpha and p_switch."""
    return seed


def linear_trajectories(seed: int) -> int:
    """States, actions and exogenous chains of the linear Ex-BMDP's train and test trajectories."""
    return seed + 1_000_003


def linear_init(seed: int) -> int:
    """nn.Linear-style initialisation of one linear LAM and its heads (`models.linear`)."""
    return 10_007 * seed + 17


def minibatches(seed: int) -> int:
    """The minibatch index stream of one model (`train.batch_indices`), linear and VQ alike."""
    return 7_919 * seed + 3


def gridworld_split(seed: int, split_id: int) -> int:
    """Grid-world split `split_id` (0 train, 1 test): no two (seed, split) pairs share a stream."""
    return 2 * seed + split_id


def control_episode(seed: int, episode: int) -> int:
    """Episode `episode` of a Distracting Control collection (`envs.control_collect`): its reset seed,
    policy stream and paired-render xi; a function of (seed, episode) alone (episode < 1_000_033)."""
    return 1_000_033 * seed + episode


def control_eval(seed: int, episode: int) -> int:
    """Episode `episode` of a policy evaluation in Distracting Control (`envs.control_eval`, App. D): its
    reset seed. Same stride as `control_episode` (episode < 1_000_033) shifted by 2**48, so evaluation
    episodes are never collection episodes of any seed < 2**48 // 1_000_033 (~2.8e8): a policy is
    never scored on the exact episodes (initial pose, xi and its drift) it was trained on."""
    return 2**48 + 1_000_033 * seed + episode


def labelled_episodes(seed: int) -> int:
    """Which training episodes carry action labels (`data.sampling.labelled_episodes`: App. D, own data)."""
    return 3 * seed + 2**40 + 11


def paired_augment(seed: int, episode: int, t: int) -> int:
    """The augmented paired view of the window (episode, t) (`data.augment.PairedAugment`: xi~ and xi~'):
    a function of (seed, episode, t) alone (episode < 1_000_003, t < 2**24), so every epoch, worker,
    episode subset and command (`train`, `diagnose`) sees the same view of that window."""
    return (2**62 + ((1_000_003 * seed + episode) << 24) + t) % 2**64
