"""What the mask-network exports (`.tflite`, `.onnx`) share: the network itself and its record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import dsp
from ..config import Config
from ..errors import ExportError
from ..nn.models import mask_model
from ..postprocess import Postprocess, model_postprocess, with_postprocess
from ..provenance import package_versions
from ..settings import ChunkSettings
from .subpixel import with_subpixel_deconvolutions


def inference_network(model: Any) -> Any:
    """The exported network: the mask branch of a cunet model with sub-pixel deconvolutions."""
    return with_subpixel_deconvolutions(mask_model(model))


def export_record(
    config: Config,
    provenance: Mapping[str, Any] | None,
    chunks: ChunkSettings,
    source: str | None,
    postprocess: str | Postprocess | None,
) -> tuple[dict[str, Any], Config]:
    """(record, config as recorded) for a mask-network export (tflite, onnx): the source's provenance
    with the chosen post-processing as the model's default, and an "export" section saying what a
    caller needs: audio and STFT settings, chunking (samples and frames), instruments, post-processing,
    the source weights' checksum and the converter's versions. No time stamp, so exports are repeatable."""
    postprocess = model_postprocess(postprocess, config.model)
    if postprocess.joint and not config.model.conditioned:
        raise ExportError(f"post-processing '{postprocess.mode}' needs a conditioned model")
    if postprocess.mode not in ("none", "ratio"):
        raise ExportError(
            f"a model's default post-processing is 'none' or 'ratio', not '{postprocess.mode}' "
            "(Wiener filtering can still be asked for at separation)"
        )
    a, m = config.audio, config.model
    chunk, overlap = chunks.samples(a, m.time_multiple)
    settings = with_postprocess(config, postprocess)
    record = dict(provenance or {})
    record["config"] = settings.to_dict()
    record["export"] = {
        "source": source,
        "source_weights_sha256": record.get("weights_sha256"),
        "chunk_seconds": chunks.chunk_seconds,
        "overlap_seconds": chunks.overlap_seconds,
        "chunk_samples": chunk,
        "overlap_samples": overlap,
        "chunk_frames": dsp.n_frames_for(chunk, a.n_fft, a.hop_length),
        "sample_rate": a.sample_rate,
        "n_channels": a.n_channels,
        "n_fft": a.n_fft,
        "hop_length": a.hop_length,
        "n_bins": a.n_bins,
        "window": "periodic hann",
        "instruments": list(m.outputs),
        "conditions": list(m.instruments) if m.conditioned else [],
        "postprocess": postprocess.mode,
        "ratio_power": postprocess.power if postprocess.mode == "ratio" else None,
        "converter": package_versions(
            ("cunet", "tensorflow", "keras", "ai-edge-litert", "tf2onnx", "onnx")
        ),
    }
    return record, settings
