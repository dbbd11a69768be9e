"""The named data sets advviz knows (:data:`NAMED_DATASETS`): their files, columns, label names and hub id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named data set lives: one file per available split, and its columns."""

    name: str
    files: dict[str, str]  # split -> file name in the data directory
    text_col: str
    label_col: str
    label_names: tuple[str, ...]
    hub_id: str  # Hugging Face dataset id used as a fallback
    description: str
    derive: tuple[str, ...] = ("dev", "test")  # missing splits to carve out of train


NAMED_DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("sst2", {"train": "sst2_glue_train.tsv.gz", "dev": "sst2_glue_dev.tsv.gz"},
                    "sentence", "label", ("negative", "positive"), "stanfordnlp/sst2",
                    "GLUE SST-2 (phrases in train; papers report on dev; GLUE test is unlabelled)",
                    derive=()),
        DatasetSpec("sst2-sent", {"train": "sst2_sent_train.tsv.gz", "dev": "sst2_sent_dev.tsv.gz",
                                  "test": "sst2_sent_test.tsv.gz"},
                    "text", "label", ("negative", "positive"), "SetFit/sst2",
                    "SST-2 sentence level (Kim 2014 splits)"),
        DatasetSpec("imdb", {"train": "imdb_train.tsv.gz", "test": "imdb_test.tsv.gz"},
                    "text", "label", ("negative", "positive"), "stanfordnlp/imdb",
                    "Large Movie Review v1.0 (Maas et al. 2011)"),
        DatasetSpec("agnews", {"train": "agnews_trainsubset10k.tsv.gz", "test": "agnews_test.tsv.gz"},
                    "text", "label", ("World", "Sports", "Business", "Sci/Tech"), "fancyzhx/ag_news",
                    "AG's News, 10k train subset and full test"),
        DatasetSpec("mr", {"train": "mr.tsv.gz"}, "text", "label", ("negative", "positive"),
                    "cornell-movie-review-data/rotten_tomatoes", "Pang & Lee 2005 sentence polarity"),
        DatasetSpec("subj", {"train": "subj.tsv.gz"}, "text", "label", ("subjective", "objective"),
                    "SetFit/subj", "Pang & Lee 2004 subjectivity"),
    ]
}
