"""The sweep's inputs, loaded through the registries and checked before anything runs.

The driver calls :func:`check_inputs` after :func:`sweep.spec.config.load_spec`: it loads
the dataset (as many samples as the spec evaluates), fingerprints each data shard
(the fingerprint, not a file path, goes into the cell ids), checks explicit target
classes against the dataset's classes, and probes every model with a forward pass
on one sample, so a checkpoint that does not load or a model whose output does not
fit the labels is a :class:`~sweep.errors.SpecError` (exit code 2) before Ray starts.
An object-store ``output`` is checked for reachability here too.

Workers call :func:`load_data` and :func:`load_net` to get the same inputs.

torch is imported only to probe a model or to load a dataset that needs it (an image
folder, a factory): digits, CIFAR and the MNIST family are read into NumPy arrays
(:func:`load_samples`) and fingerprinted as such, to the same digests a worker
computes from the tensors of :func:`load_data`, so ``sweep plan`` (no probing) runs
without ``import torch`` and the seconds it costs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sweep.data.base import ImageSet
from sweep.data.samples import ArraySet, SampleSet
from sweep.errors import SpecError
from sweep.spec.config import AttackSpec, DatasetSpec, ModelSpec, SweepSpec
from sweep.spec.grid import DataLayout

if TYPE_CHECKING:
    import torch

    from sweep.models.checks import ModelFinding

CHECK_SAMPLES = 32  # samples the model checks run on (AutoAttack's checks use one batch)


S = TypeVar("S", bound=SampleSet[Any])


def load_data(dataset: DatasetSpec) -> ImageSet:
    """The first ``dataset.samples`` samples (all if unset) of the spec's dataset."""
    from sweep.data.registry import load_dataset

    kwargs = {}
    if "limit" in inspect.signature(load_dataset).parameters:
        kwargs["limit"] = dataset.samples  # lets a loader read only what is evaluated
    return _loaded(dataset, lambda: load_dataset(dataset.entry, "dataset", **kwargs))


def load_samples(dataset: DatasetSpec) -> ArraySet | ImageSet:
    """:func:`load_data`, as NumPy arrays when the source reads them without torch (the
    same samples and fingerprints; see the module doc), else as :func:`load_data`."""
    from sweep.data.registry import load_dataset_arrays

    arrays = _loaded(dataset, lambda: load_dataset_arrays(dataset.entry, "dataset", dataset.samples))
    return load_data(dataset) if arrays is None else arrays


def as_images(data: ArraySet | ImageSet) -> ImageSet:
    """``data`` as tensors (sharing the arrays' memory), for a model to run on."""
    return ImageSet.from_arrays(data) if isinstance(data, ArraySet) else data


def _loaded(dataset: DatasetSpec, load: Callable[[], S | None]) -> S | None:
    """``load()``'s samples cut to ``dataset.samples``; what goes wrong, a SpecError on ``dataset``."""
    try:
        data = load()
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError("dataset", dataset.name, f"could not be loaded: {type(exc).__name__}: {exc}") from exc
    if data is None:
        return None
    if dataset.samples is not None:
        data = data.take(dataset.samples)
    if len(data) == 0:
        raise SpecError("dataset", dataset.name, "has no samples")
    return data


def load_net(model: ModelSpec) -> torch.nn.Module:
    """The spec's model, frozen and in eval mode (on the CPU)."""
    from sweep.models.registry import load_model

    where = f"models[{model.index}]"
    try:
        return load_model(model.entry, where)
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(where, model.name, f"could not be loaded: {type(exc).__name__}: {exc}") from exc


def data_layout(data: SampleSet[Any], shard_size: int) -> DataLayout:
    """Shard boundaries and a content fingerprint per shard (images, labels, sample ids)."""
    n = len(data)
    digests = [data.slice(start, min(start + shard_size, n)).fingerprint()
               for start in range(0, n, shard_size)]
    return DataLayout(
        num_samples=n, shard_size=shard_size, num_classes=data.num_classes, shard_digests=tuple(digests)
    )


def check_inputs(
    spec: SweepSpec, *, probe_models: bool = True
) -> tuple[DataLayout, dict[str, list[ModelFinding]]]:
    """Load and check the dataset (and, with ``probe_models``, every model); see module doc.

    Returns the data layout and, per model, the findings of the field's model checks
    (:mod:`sweep.models.checks`: warnings, not errors; empty without ``probe_models``)."""
    check_output_reachable(spec.output)
    samples = load_samples(spec.dataset)
    check_targets(spec, samples)
    findings: dict[str, list[ModelFinding]] = {}
    if probe_models:
        from sweep.models.checks import ModelFinding, check_model

        data = as_images(samples)
        needed = [need for atk in spec.attacks for need in attack_class_needs(atk)]
        sample = data.slice(0, min(len(data), CHECK_SAMPLES))
        for model in spec.models:
            net = probe_model(model, data)
            try:
                findings[model.name] = check_model(
                    net, sample.images, sample.labels, classes_needed=needed
                )
            except Exception as exc:  # a warning, not an error: its cells will say more
                findings[model.name] = [ModelFinding(
                    "checks_failed",
                    f"the model checks could not run on {len(sample)} samples: "
                    f"{type(exc).__name__}: {exc}".splitlines()[0],
                )]
    return data_layout(samples, spec.dataset.shard_size), findings


def attack_class_needs(atk: AttackSpec) -> list[tuple[int, str]]:
    """How many classes attack ``atk`` needs (DLR, target classes), its members included."""
    from sweep.attacks.registry import create
    from sweep.models.checks import classes_needed

    entries: list[object] = [atk.params]
    attack = create(atk.name, norm=atk.norm, **atk.user_params)
    entries += list(getattr(attack, "member_entries", ()))
    return classes_needed(atk.label, entries, targeted=atk.targeted is not None)


def runs_user_code(entry: Mapping[str, Any]) -> str | None:
    """Why loading this model or dataset entry runs code the spec names, or None.

    A ``factory: "module:function"`` imports that module and calls the function (as
    Hydra's ``_target_`` does: a spec naming one is code, to be trusted like a
    script), and ``trusted: true`` unpickles a checkpoint with the full ``pickle``.
    Everything else (built-in models and datasets, torchvision architectures,
    checkpoints read with ``weights_only=True``, CIFAR's batches through an
    array-only unpickler) runs no code from the spec or its files.
    """
    if entry.get("factory") is not None:
        return f"factory {entry['factory']!r}"
    if entry.get("trusted") is True and entry.get("checkpoint") is not None:
        return "a trusted checkpoint (unpickled with pickle)"
    return None


def check_inputs_without_code(spec: SweepSpec) -> tuple[DataLayout | None, list[str]]:
    """:func:`check_inputs` minus everything that would run code the spec names
    (``sweep validate --no-code``): returns the data layout (None when the dataset
    comes from a factory) and, per entry left unchecked, ``"models[2]: factory ..."``."""
    check_output_reachable(spec.output)
    skipped: list[str] = []
    samples = None
    why = runs_user_code(spec.dataset.entry)
    if why is None:
        samples = load_samples(spec.dataset)
        check_targets(spec, samples)
    else:
        skipped.append(f"dataset: {why}")
    for model in spec.models:
        why = runs_user_code(model.entry)
        if why is not None:
            skipped.append(f"models[{model.index}] ({model.name}): {why}")
        elif samples is not None:
            probe_model(model, as_images(samples))
    return (None if samples is None else data_layout(samples, spec.dataset.shard_size)), skipped


def check_targets(spec: SweepSpec, data: SampleSet[Any]) -> None:
    """Explicit target classes exist in the dataset."""
    for atk in spec.attacks:
        if atk.targeted is None:
            continue
        for j, t in enumerate(atk.targeted.targets):
            if t >= data.num_classes:
                raise SpecError(
                    f"attacks[{atk.index}].targeted.targets[{j}]", t,
                    f"the dataset has {data.num_classes} classes (0..{data.num_classes - 1})",
                )


def check_output_reachable(output: Path | str) -> None:
    """An object-store ``output``: its filesystem resolves and its bucket exists.

    Checked here, before Ray starts, rather than when the first worker uploads a
    shard minutes later. Local folders were checked by the parser. Only read
    requests are made; a missing write permission shows when the first shard fails.
    """
    from sweep.results import store

    try:
        if store.is_local(output):
            return
        store.ensure_output(output)
    except (OSError, ValueError) as exc:  # pyarrow: ArrowInvalid is a ValueError, IOError an OSError
        raise SpecError("output", output, f"cannot be reached: {exc}".splitlines()[0]) from exc


def probe_model(model: ModelSpec, data: ImageSet) -> torch.nn.Module:
    """One forward pass on one sample: the output must be finite ``[1, num_classes]`` logits.
    Returns the loaded model."""
    import torch

    where = f"models[{model.index}]"
    net = load_net(model)
    sample = data.images[:1]
    try:
        with torch.no_grad():
            out = net(sample)
    except Exception as exc:
        raise SpecError(
            where, model.name,
            f"raised on one {data.name} sample of shape {tuple(sample.shape)}: {type(exc).__name__}: {exc}",
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise SpecError(where, model.name, f"returned a {type(out).__name__}, expected a logits tensor")
    if out.dim() != 2 or out.shape != (1, data.num_classes):
        raise SpecError(
            where, model.name,
            f"outputs shape {tuple(out.shape)} for one sample; {data.name} has "
            f"{data.num_classes} classes, so expected (1, {data.num_classes})",
        )
    if not bool(torch.isfinite(out).all()):
        raise SpecError(where, model.name, f"returned non-finite logits on a {data.name} sample")
    return net
