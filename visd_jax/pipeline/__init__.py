"""Records to static-shape model input: sources, checks, transforms, grain loader."""
from visd_jax.pipeline.batching import Buckets, pad_batch
from visd_jax.pipeline.example import ExampleConfig, make_example, tokenize_prompt
from visd_jax.pipeline.loader import (PipelineConfig, PipelineIterator, decode_threads,
                                      make_dataset, make_iterator)
from visd_jax.pipeline.records import (NoUsableRecords, RecordError, check_against_video, check_schema,
                                       temporal_span)
from visd_jax.pipeline.sources import StgrSource, TfdsSource

__all__ = [
    "Buckets", "ExampleConfig", "NoUsableRecords", "PipelineConfig", "PipelineIterator", "RecordError",
    "StgrSource", "TfdsSource", "check_against_video", "check_schema", "decode_threads",
    "make_dataset",
    "make_example", "make_iterator", "pad_batch", "temporal_span", "tokenize_prompt",
]
