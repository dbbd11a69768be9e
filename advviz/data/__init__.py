"""Named text-classification data sets and local files.

A data set is read from a *data directory* (``--data-dir``, env ``ADVVIZ_DATA_DIR``, default
``../shared/data`` next to the checkout) and, when a name is not found there, from the Hugging
Face hub if the optional ``datasets`` package and the network are available.

Every split is returned as a :class:`TextDataset` (texts, integer labels, label names). Sets
without a dev or test split get a seeded, stratified split whose parameters are recorded in
:attr:`TextDataset.split_info` (and from there in every checkpoint's config).

The package: ``dataset`` (:class:`TextDataset`), ``files`` (bounded reading of tables and text
files), ``labels`` (parsing and checking labels, ``--label-map``), ``splits`` (derived dev/test),
``catalog`` (the named sets), ``named`` (the data directory, the hub, loading and listing), ``semi``
(a labelled share, unlabeled text, ``--augment`` files). Every name is re-exported here, so that
``from advviz import data; data.X`` keeps working.
"""

from __future__ import annotations

from .catalog import NAMED_DATASETS, DatasetSpec
from .dataset import SPLITS, TextDataset, subset_indices
from .files import LABEL_COLUMNS, READ_CHUNK, TEXT_COLUMNS, _read_bytes, _read_text, read_lines, read_rows
from .labels import (
    MIN_ROWS_FOR_CLASS_CHECK, align_labels, check_classes, ids_mean_classes, label_map_record, parse_label,
    parse_label_map, rows_to_dataset,
)
from .named import (
    DATA_DIR_ENV, data_dir_search, dataset_files, default_data_dir, hub_available, list_datasets, load_dataset,
    load_splits, training_reading,
)
from .semi import LABELED_SPLIT_STREAM, concat, labeled_split, load_unlabeled, read_augment
from .splits import DERIVED_FRACTION, DERIVED_SPLIT_SEED, derive_splits, stratified_split

__all__ = [
    'NAMED_DATASETS', 'DatasetSpec', 'SPLITS', 'TextDataset', 'subset_indices', 'LABEL_COLUMNS', 'READ_CHUNK', 'TEXT_COLUMNS',
    '_read_bytes', '_read_text', 'read_lines', 'read_rows', 'MIN_ROWS_FOR_CLASS_CHECK',
    'align_labels', 'check_classes', 'ids_mean_classes', 'label_map_record', 'parse_label', 'parse_label_map',
    'rows_to_dataset', 'DATA_DIR_ENV', 'data_dir_search', 'dataset_files', 'default_data_dir', 'hub_available',
    'list_datasets', 'load_dataset', 'load_splits', 'training_reading', 'LABELED_SPLIT_STREAM', 'concat',
    'labeled_split', 'load_unlabeled', 'read_augment', 'DERIVED_FRACTION', 'DERIVED_SPLIT_SEED', 'derive_splits',
    'stratified_split',
]
