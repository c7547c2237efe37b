"""The film-scale plan: the shots of a whole reel, grouped into training units, as `plan.json`.

`build_plan` reads the Source once at proxy size (`ml.curation.analyse_frames`), finds the shots
with the one cut detector the pairs stage uses (`ml.curation.detect_cuts`), and groups the shots
into training units by the scope the artist chose (the workflow's Stage 1 pair counts):

  sequence   one unit for every shot (24-64+ pairs)
  scene      runs of neighbouring shots whose colour is alike, or the scenes named (12-24 pairs each)
  shot       one unit per shot (4-9 pairs each)

Each unit gets its pairs (`ml.curation.suggest_pairs` over the unit's frames, with the scope's count;
partners by time, and for a Reference at a 3:2 pulldown's rate never a frame that mixes two film
frames, which the plan reads the Reference once to find) and, per shot, held-out pairs: the frames its
model is scored on. Every shot also gets shot-scope pairs at plan time, kept for the fallback below, so
no later step needs the plates' analysis again.

Shot-level fallback, decided by measurement (`decide_fallbacks`): after a sequence or scene unit is
trained, `ml score` scores its model per shot on that shot's held-out pairs against the baseline
(`ml.baseline`'s 3D LUT, fitted on the unit's training pairs as `ml baseline` fits it, or with
`baseline="shot"` on the shot's own training pairs: a grade of that shot alone, a stricter bar). A
shot where the model's PSNR (branch channels) gains less than `min_gain_db` over that baseline
(0, the default: it loses to it; negative: a tolerance), falls more than `max_drop_db` (default 3)
below the unit's median shot (the model does not generalise to it), or stays below the artist's
`min_psnr`, gets a unit of its own, recorded with the reason and the numbers. A fallback unit holds
out the very frames the wider model was scored on, so before and after are measured on the same
frames. Inference runs each shot with the model of the unit it ends up with (`model_unit`).

The plan is plain JSON; `plan_tasks` turns it into the engine commands a farm runs (`ml farm`, the
Flamenco job type in farm/flamenco/, the add-on's Farm panel all use these). A unit asking for more
than one GPU trains under torchrun inside its task (`train_argv`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FilmRecoveryError
from .imageio import atomic_path
from .job import Job, Pair, Plate, job_to_dict, load_job, save_job

if TYPE_CHECKING:  # annotations only: curation is imported where a plan is built
    from .curation import FrameStats, Shot

PLAN_SCHEMA = "film_recovery.plan"
PLAN_VERSION = 1
SCOPES = ("sequence", "scene", "shot")
UNIT_STATUSES = ("planned", "dataset", "trained", "scored", "done", "failed")
DEFAULT_CHUNK_FRAMES = 48
DEFAULT_SCENE_THRESHOLD = 0.35  # half L1 distance of shots' mean colour histograms that starts a new scene
DEFAULT_MIN_GAIN_DB = 0.0
# A shot the unit's model scores this many dB below the unit's median shot is one it does not
# generalise to (measured on the sample reel: the odd shot 4.0 dB below, the others within 1.7).
DEFAULT_MAX_DROP_DB = 3.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class PlanShot:
    name: str
    first: int
    last: int
    group_unit: str                      # the sequence/scene/shot unit the plan put it in
    model_unit: str                      # the unit whose model infers it (its own after a fallback)
    scene: str = ""
    fallback_pairs: list[dict[str, Any]] = field(default_factory=list)  # shot-scope suggestions
    status: str = "planned"              # planned | inferred

    @property
    def frames(self) -> int:
        return self.last - self.first + 1


@dataclass
class Unit:
    id: str
    scope: str
    shots: list[str]
    frames: list[list[int]]              # [[first, last], ...] of its shots
    pairs: list[dict[str, Any]]          # Pair fields; holdout=True marks the frames it is scored on
    gpus: int = 1
    parent: str = ""                     # the unit a fallback unit replaces for its shot
    reason: str = ""
    status: str = "planned"
    scores: dict[str, Any] = field(default_factory=dict)  # shot -> numbers, once scored


@dataclass
class Plan:
    job: str                             # the reel's job.json (absolute)
    name: str
    work_dir: str
    branch: str
    scope: str
    cuts: list[int]
    shots: list[PlanShot]
    units: list[Unit]
    min_gain_db: float = DEFAULT_MIN_GAIN_DB
    min_psnr: float | None = None
    max_drop_db: float | None = DEFAULT_MAX_DROP_DB
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    holdout_per_shot: int = 1
    baseline: str = "unit"               # unit | shot: what the per-shot scores fit their 3D LUT on
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schema: str = PLAN_SCHEMA
    version: int = PLAN_VERSION

    # -- lookups --------------------------------------------------------------------------------
    def unit(self, unit_id: str) -> Unit:
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        raise FilmRecoveryError(f"no unit {unit_id!r} in the plan.", where="--unit",
                                fix=f"Pick one of {', '.join(u.id for u in self.units)}.")

    def shot(self, name: str) -> PlanShot:
        for shot in self.shots:
            if shot.name == name:
                return shot
        raise FilmRecoveryError(f"no shot {name!r} in the plan.", where="shot", fix="Check the plan's shots.")

    @property
    def folder(self) -> Path:
        return Path(self.work_dir) / "plan"

    def unit_dir(self, unit_id: str) -> Path:
        return self.folder / "units" / unit_id

    def unit_job_path(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "job.json"

    def model_path(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "train" / "model_best.safetensors"

    def scores_path(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "scores.json"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"schema": data.pop("schema"), "version": data.pop("version"), **data}


# --------------------------------------------------------------------------- file I/O

def default_plan_path(job: Job) -> Path:
    return job.work_path("plan", "plan.json")


def save_plan(plan: Plan, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plan.as_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def load_plan(path: str | os.PathLike) -> Plan:
    path = Path(path)
    fix = "Make the plan with `python -m ml plan job.json` (the Farm panel's Plan Reel)."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FilmRecoveryError(f"cannot read the plan ({exc.strerror}).", where=str(path), fix=fix) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FilmRecoveryError(f"the plan is not valid JSON ({exc}).", where=str(path), fix=fix) from exc
    if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
        raise FilmRecoveryError("not a Film Recovery plan (schema is not film_recovery.plan).", where=str(path),
                                fix=fix)
    if data.get("version") != PLAN_VERSION:
        raise FilmRecoveryError(f"plan version {data.get('version')!r}; this engine reads {PLAN_VERSION}.",
                                where=f"{path}: version", fix="Make the plan again with this engine.")
    try:
        shots = [PlanShot(**s) for s in data["shots"]]
        units = [Unit(**u) for u in data["units"]]
        rest = {k: v for k, v in data.items() if k not in ("shots", "units")}
        plan = Plan(shots=shots, units=units, **rest)
    except (KeyError, TypeError) as exc:
        raise FilmRecoveryError(f"the plan is missing or has an unknown field ({exc}).", where=str(path),
                                fix=fix) from exc
    _check_plan(plan, path)
    return plan


def _check_plan(plan: Plan, path: Path) -> None:
    ids = [u.id for u in plan.units]
    if len(set(ids)) != len(ids):
        raise FilmRecoveryError("two units share an id.", where=f"{path}: units", fix="Make the plan again.")
    for shot in plan.shots:
        if shot.model_unit not in ids or shot.group_unit not in ids:
            raise FilmRecoveryError(f"shot {shot.name} names a unit the plan does not have.",
                                    where=f"{path}: shots[{shot.name}]", fix="Make the plan again.")
    for unit in plan.units:
        if unit.status not in UNIT_STATUSES:
            raise FilmRecoveryError(f"unit {unit.id} has the unknown status {unit.status!r}.",
                                    where=f"{path}: units[{unit.id}].status",
                                    fix=f"Use one of {', '.join(UNIT_STATUSES)}.")
        if unit.gpus < 1:
            raise FilmRecoveryError(f"unit {unit.id} asks for {unit.gpus} GPUs.", where=f"{path}: units[{unit.id}].gpus",
                                    fix="Ask for 1 or more.")
    if plan.chunk_frames < 1:
        raise FilmRecoveryError("chunk_frames must be at least 1.", where=f"{path}: chunk_frames",
                                fix="Set chunk_frames to the frames one inference task writes (e.g. 48).")


# --------------------------------------------------------------------------- building a plan

def safe_id(text: str) -> str:
    return _SAFE.sub("-", text).strip("-") or "unit"


def group_scenes(shot_histograms: Sequence[np.ndarray], threshold: float = DEFAULT_SCENE_THRESHOLD) -> list[int]:
    """Scene index per shot: a neighbouring shot joins the scene while its mean colour histogram
    (luma 32 + Cb 16 + Cr 16 bins) is within `threshold` (half L1 per part, averaged) of the shot before."""
    scenes: list[int] = []
    for i, hist in enumerate(shot_histograms):
        if i == 0:
            scenes.append(0)
            continue
        distance = 0.5 * float(np.abs(hist - shot_histograms[i - 1]).sum()) / 3.0
        scenes.append(scenes[-1] + (1 if distance > threshold else 0))
    return scenes


def parse_scenes(text: str, shot_count: int) -> list[int]:
    """`--scenes 1-3,4,5-8` (shot numbers, in order, covering every shot) -> scene index per shot."""
    fix = f"List runs of shot numbers covering 1-{shot_count} in order, e.g. 1-3,4-{shot_count}."
    scenes: list[int] = []
    for index, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        first, sep, last = part.partition("-")
        try:
            a, b = int(first), int(last if sep else first)
        except ValueError:
            raise FilmRecoveryError(f"cannot read the scene {part!r}.", where="--scenes", fix=fix) from None
        if a != len(scenes) + 1 or b < a:
            raise FilmRecoveryError(f"scene {part!r} does not continue from shot {len(scenes)}.", where="--scenes",
                                    fix=fix)
        scenes += [index] * (b - a + 1)
    if len(scenes) != shot_count:
        raise FilmRecoveryError(f"the scenes cover {len(scenes)} shot(s); the reel has {shot_count}.",
                                where="--scenes", fix=fix)
    return scenes


def mark_holdouts(pairs: list[Pair], shots: Sequence[Any], per_shot: int) -> list[Pair]:
    """Per shot with at least two accepted pairs, hold out the `per_shot` pairs nearest the shot's
    middle (never its last training pair): the frames its model is scored on."""
    out = [dataclasses.replace(p, holdout=False) for p in pairs]
    for shot in shots:
        members = [p for p in out if p.accepted and shot.first <= p.source_frame <= shot.last]
        keep = min(per_shot, len(members) - 1)
        if keep <= 0:
            continue
        middle = (shot.first + shot.last) / 2.0
        for pair in sorted(members, key=lambda p: (abs(p.source_frame - middle), p.source_frame))[:keep]:
            pair.holdout = True
    return out


def _pair_dicts(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(p) for p in pairs]


def pairs_of(data: Sequence[dict[str, Any]]) -> list[Pair]:
    names = {f.name for f in dataclasses.fields(Pair)}
    return [Pair(**{k: v for k, v in d.items() if k in names}) for d in data]


@dataclass(frozen=True)
class PlanRules:
    """The artist's choices for a plan: the `ml plan` options (the defaults are the command's)."""

    count: int | None = None             # pairs per unit; None: the scope's preset
    scenes: str = ""                     # scenes by shot number, "1-3,4-8"; "": grouped by colour
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    min_gain_db: float = DEFAULT_MIN_GAIN_DB
    min_psnr: float | None = None
    max_drop_db: float | None = DEFAULT_MAX_DROP_DB
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    holdout_per_shot: int = 1
    gpus: int = 1                        # per unit's training
    baseline: str = "unit"               # unit | shot: what the per-shot scores fit their 3D LUT on


@dataclass
class _Reel:
    """The Source read once for planning: per-frame stats, cuts, shots, each frame's Reference partner, and
    why a partner cannot be used (a pulldown Reference's frame mixing two film frames)."""

    by_frame: dict[int, FrameStats]
    cuts: list[int]
    shots: list[Shot]
    partner: Callable[[int], int | None]
    partner_problem: Callable[[int], str | None]


def build_plan(job: Job, job_path: str | os.PathLike, scope: str = "sequence", *, rules: PlanRules | None = None,
               load: Callable[[int], np.ndarray] | None = None, frames: Sequence[int] | None = None,
               workers: int = 4, progress: Callable[[int, int], None] | None = None) -> Plan:
    """Shots, units and pairs for the whole Source (see the module docstring)."""
    rules = rules or PlanRules()
    _check_rules(scope, rules)
    reel = _read_reel(job, frames, load, workers, progress)
    plan_shots = _plan_shots(reel, _scene_of(reel, rules))
    units, warnings = _plan_units(reel, scope, _unit_groups(scope, reel.shots, plan_shots), rules, plan_shots)
    return Plan(job=str(Path(job_path).resolve()), name=job.name, work_dir=str(Path(job.work_dir).resolve()),
                branch=job.branch, scope=scope, cuts=list(reel.cuts), shots=plan_shots, units=units,
                min_gain_db=float(rules.min_gain_db),
                min_psnr=None if rules.min_psnr is None else float(rules.min_psnr),
                max_drop_db=None if rules.max_drop_db is None else float(rules.max_drop_db),
                chunk_frames=int(rules.chunk_frames), holdout_per_shot=int(rules.holdout_per_shot),
                baseline=rules.baseline, warnings=warnings)


def _check_rules(scope: str, rules: PlanRules) -> None:
    """Refuse an unknown scope or baseline, counts below their minimum, and thresholds that are not finite."""
    if scope not in SCOPES:
        raise FilmRecoveryError(f"unknown scope {scope!r}.", where="--scope", fix="Use sequence, scene or shot.")
    if rules.baseline not in ("unit", "shot"):
        raise FilmRecoveryError(f"unknown baseline {rules.baseline!r}.", where="--baseline", fix="Use unit or shot.")
    for name, value, low in (("--chunk-frames", rules.chunk_frames, 1),
                             ("--holdout-per-shot", rules.holdout_per_shot, 0), ("--gpus", rules.gpus, 1)):
        if value < low:
            raise FilmRecoveryError(f"{value} is below {low}.", where=name, fix=f"Give {low} or more.")
    if not math.isfinite(rules.min_gain_db) or \
            any(v is not None and not math.isfinite(v) for v in (rules.min_psnr, rules.max_drop_db)):
        raise FilmRecoveryError("thresholds must be finite numbers.", where="--min-gain/--min-psnr/--max-drop",
                                fix="Give a number of dB, e.g. 0.5.")


def _reference_partner(frame: int, nominal: Callable[[int], int], reference: Plate) -> int | None:
    """The Reference frame at the same time as a Source frame; None outside a Reference plate that is set."""
    r = nominal(frame)
    return r if reference.first_frame <= r <= reference.last_frame or not reference.path else None


def _read_reel(job: Job, frames: Sequence[int] | None, load: Callable[[int], np.ndarray] | None, workers: int,
               progress: Callable[[int, int], None] | None) -> _Reel:
    """Analyse every Source frame once at proxy size and find the reel's cuts and shots."""
    from . import curation
    from .ingest import plate_frames, source_frame
    from .suggest_stage import reference_field_mixes

    frames = list(frames if frames is not None else plate_frames(job.source))
    if len(frames) < 2:
        raise FilmRecoveryError("a reel needs at least two Source frames.", where="job.source",
                                fix="Set the Source plate's frame range.")
    load = load or (lambda f: source_frame(job, f))
    stats = curation.analyse_frames(load, frames, workers, progress)
    cuts = curation.detect_cuts(stats)
    nominal = curation.nominal_mapping(job.source, job.reference)
    partner = functools.partial(_reference_partner, nominal=nominal, reference=job.reference)
    # An NTSC Reference's frames that mix two film frames are no partner (as `suggest` refuses them).
    mixed = reference_field_mixes(job, cuts, workers)
    problems = {f: curation.mixed_partner_reason(r, mixed[r]) for f in frames if (r := partner(f)) in mixed}
    return _Reel({s.frame: s for s in stats}, cuts, curation.split_shots(frames, cuts), partner, problems.get)


def _scene_of(reel: _Reel, rules: PlanRules) -> list[int]:
    """Scene index per shot: the scenes named, else runs of shots whose mean colour is alike."""
    if rules.scenes:
        return parse_scenes(rules.scenes, len(reel.shots))
    by_frame = reel.by_frame
    histograms = [np.mean([by_frame[f].histogram for f in range(s.first, s.last + 1) if f in by_frame], axis=0)
                  for s in reel.shots]
    return group_scenes(histograms, rules.scene_threshold)


def _suggest(reel: _Reel, shot_list: list[Shot], unit_scope: str, wanted: int | None) -> tuple[list[Pair], list[str]]:
    """`curation.suggest_pairs` over these shots' frames, the pairs named after the reel's shots; and its warnings."""
    from . import curation

    members = [reel.by_frame[f] for s in shot_list for f in range(s.first, s.last + 1) if f in reel.by_frame]
    # Every cut of the reel: frames next to a cut at the unit's edge are refused too.
    suggestion = curation.suggest_pairs(members, wanted, unit_scope, cuts=reel.cuts, reference_for=reel.partner,
                                        partner_problem=reel.partner_problem)
    # suggest_pairs numbers the shots of its own range from 1: give them the reel's names.
    names = {s.first: s.name for s in shot_list}
    starts = sorted(names)
    pairs = []
    for pair in suggestion.pairs:
        first = max(s for s in starts if s <= pair.source_frame)
        pairs.append(dataclasses.replace(pair, shot=names[first],
                                         label=f"{names[first]}.{pair.label.partition('.')[2]}"))
    return pairs, suggestion.warnings


def _plan_shots(reel: _Reel, scene_of: list[int]) -> list[PlanShot]:
    """Every shot with its scene and its shot-scope pairs (kept for a fallback); units come later."""
    plan_shots = []
    for shot in reel.shots:
        pairs, _ = _suggest(reel, [shot], "shot", None)
        plan_shots.append(PlanShot(shot.name, shot.first, shot.last, "", "", scene=f"scene-{scene_of[int(shot.name) - 1] + 1}",
                                   fallback_pairs=_pair_dicts(pairs)))
    return plan_shots


def _unit_groups(scope: str, shots: list[Shot], plan_shots: list[PlanShot]) -> list[tuple[str, list[Shot]]]:
    """(unit name, shots) of each training unit the scope asks for."""
    if scope == "sequence":
        return [("sequence", list(shots))]
    if scope == "shot":
        return [(f"shot-{shot.name}", [shot]) for shot in shots]
    groups: list[tuple[str, list[Shot]]] = []
    for shot in shots:
        scene = plan_shots[int(shot.name) - 1].scene
        if groups and groups[-1][0] == scene:
            groups[-1][1].append(shot)
        else:
            groups.append((scene, [shot]))
    return groups


def _plan_units(reel: _Reel, scope: str, groups: list[tuple[str, list[Shot]]], rules: PlanRules,
                plan_shots: list[PlanShot]) -> tuple[list[Unit], list[str]]:
    """Each group's unit with its pairs and held-out pairs, and the warnings; points its shots at it."""
    units: list[Unit] = []
    warnings: list[str] = []
    for unit_id, members in groups:
        pairs, unit_warnings = _suggest(reel, members, scope, rules.count)
        warnings += [f"{unit_id}: {w}" for w in unit_warnings]
        pairs = mark_holdouts(pairs, members, rules.holdout_per_shot)
        for shot in members:
            if not any(p.holdout and shot.first <= p.source_frame <= shot.last for p in pairs):
                warnings.append(f"{unit_id}: shot {shot.name} has no held-out pair, so its model cannot be scored "
                                "on it (no fallback decision for it).")
        units.append(Unit(id=safe_id(unit_id), scope=scope, shots=[s.name for s in members],
                          frames=[[s.first, s.last] for s in members], pairs=_pair_dicts(pairs), gpus=rules.gpus))
        for shot in members:
            plan_shots[int(shot.name) - 1].group_unit = safe_id(unit_id)
            plan_shots[int(shot.name) - 1].model_unit = safe_id(unit_id)
    return units, warnings


# --------------------------------------------------------------------------- unit jobs

def unit_job(plan: Plan, unit: Unit, job: Job | None = None) -> Job:
    """The reel's job with this unit's pairs, dataset folder and model; everything else (plates,
    balance, alignment, crop, training, outputs, work_dir and name) stays the reel's, so every unit
    writes its frames into the reel's infer/ folders."""
    job = copy.deepcopy(job or load_job(plan.job))
    job.pairs = pairs_of(unit.pairs)
    job.dataset_dir = str(plan.unit_dir(unit.id) / "dataset")
    job.model_path = str(plan.model_path(unit.id))
    return job


def write_unit_jobs(plan: Plan, job: Job | None = None) -> list[Path]:
    """Write each unit's job.json (only when its content changed, so a re-plan keeps file times)."""
    job = job or load_job(plan.job)
    written = []
    for unit in plan.units:
        path = plan.unit_job_path(unit.id)
        text = json.dumps(job_to_dict(unit_job(plan, unit, job)), indent=2)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            save_job(unit_job(plan, unit, job), path)
        written.append(path)
    return written


# --------------------------------------------------------------------------- tasks

@dataclass
class Task:
    """One engine command a farm runs: `argv` follows `python -m ml --json` (or is a whole command line
    when `launcher` is set, e.g. torchrun); `after` lists the tasks it waits for."""

    id: str
    kind: str                # dataset | train | score | infer
    unit: str
    argv: list[str]
    after: list[str] = field(default_factory=list)
    frames: int = 0          # Source frames an infer task writes
    gpus: int = 0            # GPUs the task holds (0: CPU work)
    launcher: list[str] = field(default_factory=list)  # prefix replacing `python -m ml --json`
    shot: str = ""
    frame_range: list[int] = field(default_factory=list)

    def command(self, python: str = sys.executable) -> list[str]:
        if self.launcher:
            return [*self.launcher, *self.argv]
        return [python, "-m", "ml", "--json", *self.argv]

    def signature(self) -> str:
        """What makes the task's outputs what they are: its command line (the unit job's content is
        checked separately, by the engine commands themselves)."""
        import hashlib

        return hashlib.sha256(json.dumps([self.kind, self.argv, self.launcher]).encode()).hexdigest()


def torchrun_launcher(gpus: int, python: str = sys.executable) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m ml --json` (as `python -m torch.distributed.run`,
    so it needs no torchrun script on PATH): one process per GPU of the task's machine."""
    return [python, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(int(gpus)), "-m", "ml", "--json"]


def train_argv(plan: Plan, unit: Unit) -> list[str]:
    return ["train", str(plan.unit_job_path(unit.id)), "--out", str(plan.unit_dir(unit.id) / "train")]


def chunks(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """[first, last] in runs of at most `size` frames."""
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


def unit_tasks(plan: Plan, unit: Unit, python: str = sys.executable) -> list[Task]:
    """Dataset, train and (for a unit that can fall back) score of one unit."""
    job = str(plan.unit_job_path(unit.id))
    prefix = f"{unit.id}:"
    tasks = [Task(prefix + "dataset", "dataset", unit.id, ["dataset", job]),
             Task(prefix + "train", "train", unit.id, train_argv(plan, unit), [prefix + "dataset"], gpus=unit.gpus,
                  launcher=torchrun_launcher(unit.gpus, python) if unit.gpus > 1 else [])]
    tasks.append(Task(prefix + "score", "score", unit.id, ["score", job, "--out", str(plan.scores_path(unit.id)),
                                                           "--baseline", plan.baseline], [prefix + "train"]))
    return tasks


def infer_tasks(plan: Plan, shot: PlanShot) -> list[Task]:
    """Inference of one shot in chunks of plan.chunk_frames, with the model of its unit."""
    unit = plan.unit(shot.model_unit)
    job = str(plan.unit_job_path(unit.id))
    after = [f"{unit.id}:score"]
    return [Task(f"{unit.id}:infer:{shot.name}:{a}-{b}", "infer", unit.id,
                 ["infer", job, "--frames", f"{a}-{b}", "--model", str(plan.model_path(unit.id))], after,
                 frames=b - a + 1, gpus=1, shot=shot.name, frame_range=[a, b])
            for a, b in chunks(shot.first, shot.last, plan.chunk_frames)]


def plan_tasks(plan: Plan, units: Sequence[str] | None = None, python: str = sys.executable) -> list[Task]:
    """Every task the plan as it stands asks for (units' training, then each shot's inference with
    its current model). Fallback units appear once `decide_fallbacks` has added them."""
    chosen = set(units) if units else {u.id for u in plan.units}
    tasks = [t for u in plan.units if u.id in chosen for t in unit_tasks(plan, u, python)]
    for shot in plan.shots:
        if shot.model_unit in chosen:
            tasks += infer_tasks(plan, shot)
    return tasks


# --------------------------------------------------------------------------- fallback

def shot_loses(numbers: dict[str, Any], branch: str, min_gain_db: float, min_psnr: float | None,
               baseline: str = "unit", max_drop_db: float | None = None, unit_median: float | None = None) -> str:
    """Why the unit's model is not good enough for this shot ("" when it is): its PSNR on the shot's
    held-out pairs (branch channels) gains less than `min_gain_db` over the baseline's (0: it loses
    to the baseline; a negative value tolerates that much), stays below `min_psnr`, or falls more
    than `max_drop_db` below `unit_median` (the median of the unit's scored shots: the model
    generalises to the others, not to this one)."""
    if not numbers.get("scored"):
        return ""
    model, base = numbers["model"], numbers["baseline"]
    gain = model["psnr"] - base["psnr"]
    detail = (f"PSNR {model['psnr']:.2f} vs {base['psnr']:.2f} dB, CIEDE2000 mean {model['delta_e_mean']:.2f} vs "
              f"{base['delta_e_mean']:.2f} (model vs baseline)")
    if gain < min_gain_db:
        if min_gain_db == 0.0:
            return f"loses to the baseline ({baseline} 3D LUT): {detail}"
        return f"gains {gain:+.2f} dB over the baseline ({baseline} 3D LUT), below the plan's {min_gain_db:+.2f} dB: {detail}"
    if min_psnr is not None and model["psnr"] < min_psnr:
        return f"PSNR {model['psnr']:.2f} dB is below the plan's threshold of {min_psnr:.2f} dB: {detail}"
    if max_drop_db is not None and unit_median is not None and model["psnr"] < unit_median - max_drop_db:
        return (f"PSNR {model['psnr']:.2f} dB is {unit_median - model['psnr']:.2f} dB below the unit's median shot "
                f"({unit_median:.2f} dB; the plan allows {max_drop_db:.2f}): {detail}")
    return ""


def decide_fallbacks(plan: Plan, unit_id: str, scores: dict[str, Any]) -> list[Unit]:
    """Record `scores` (from `ml score`) on the unit and give every shot whose numbers lose a unit
    of its own (returned; already added to the plan). A shot unit, or a fallback, never falls back."""
    unit = plan.unit(unit_id)
    unit.scores = scores.get("shots", {})
    unit.status = "scored"
    added: list[Unit] = []
    if unit.scope == "shot" or unit.parent:
        for decision in plan.fallbacks:  # the fallback's own numbers are the "after" of its decision
            if decision["unit"] == unit.id and decision["shot"] in unit.scores:
                decision["after"] = _headline(unit.scores[decision["shot"]])
        return added
    scored = [n["model"]["psnr"] for n in unit.scores.values() if n.get("scored")]
    median = float(np.median(scored)) if len(scored) >= 3 else None  # a median of two says nothing
    for name in unit.shots:
        numbers = unit.scores.get(name, {})
        reason = shot_loses(numbers, plan.branch, plan.min_gain_db, plan.min_psnr, plan.baseline,
                            plan.max_drop_db, median)
        if not reason:
            continue
        shot = plan.shot(name)
        new_id = safe_id(f"shot-{name}")
        if any(u.id == new_id for u in plan.units):
            continue  # decided already (a re-run of the same scores)
        held = [p for p in unit.pairs if p["holdout"] and shot.first <= p["source_frame"] <= shot.last]
        held_frames = {p["source_frame"] for p in held}
        training = [dict(p, holdout=False) for p in shot.fallback_pairs if p["source_frame"] not in held_frames]
        if not training:
            plan.warnings.append(f"shot {name}: {reason}, but it has no pairs of its own to train on; it keeps "
                                 f"the {unit.id} model.")
            continue
        pairs = sorted(training + [dict(p) for p in held], key=lambda p: p["source_frame"])
        fallback = Unit(id=new_id, scope="shot", shots=[name], frames=[[shot.first, shot.last]], pairs=pairs,
                        gpus=1, parent=unit.id, reason=reason)
        plan.units.append(fallback)
        shot.model_unit = new_id
        plan.fallbacks.append({"shot": name, "from_unit": unit.id, "unit": new_id, "reason": reason,
                               "before": _headline(numbers), "after": None,
                               "pairs": len(training), "held_out": sorted(held_frames)})
        added.append(fallback)
    return added


def _headline(numbers: dict[str, Any]) -> dict[str, Any]:
    keys = ("psnr", "delta_e_mean", "ssim")
    return {method: {k: numbers[method][k] for k in keys} for method in ("source", "baseline", "model")
            if method in numbers}


def summary_lines(plan: Plan) -> list[str]:
    """A short human summary (the CLI's messages, the panel's tooltip)."""
    lines = [f"{len(plan.shots)} shot(s), cuts before {', '.join(map(str, plan.cuts)) or 'none'}; "
             f"{len(plan.units)} unit(s) at {plan.scope} scope."]
    for unit in plan.units:
        accepted = [p for p in unit.pairs if p["accepted"]]
        lines.append(f"unit {unit.id} ({unit.status}): shots {', '.join(unit.shots)}; {len(accepted)} pairs, "
                     f"{sum(p['holdout'] for p in accepted)} held out" + (f"; falls back from {unit.parent}: "
                                                                         f"{unit.reason}" if unit.parent else ""))
    return lines
