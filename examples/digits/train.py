"""Train a classifier on scikit-learn's bundled digits dataset (8x8 images of handwritten digits).

The dataset ships with scikit-learn, so nothing is downloaded. Run it in the box:

    deepbox ssh -- python /workspace/train.py

It prints the test accuracy and writes outputs/metrics.json next to this file, which is the
project folder mounted at /workspace: the file appears on the host, owned by the host user.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import sklearn
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUTPUTS = Path(__file__).resolve().parent / "outputs"


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a classifier on the digits dataset.")
    parser.add_argument("--test-size", type=float, default=0.25, help="share of the data held out for testing")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the train/test split")
    args = parser.parse_args()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=args.test_size, random_state=args.seed, stratify=digits.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    started = time.perf_counter()
    model.fit(x_train, y_train)
    seconds = time.perf_counter() - started
    accuracy = accuracy_score(y_test, model.predict(x_test))
    print(f"LogisticRegression on {len(x_train)} digits: test accuracy {accuracy:.4f} ({seconds:.2f} s to train)")

    metrics = {
        "model": "StandardScaler + LogisticRegression",
        "accuracy": round(float(accuracy), 4),
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "train_seconds": round(seconds, 3),
        "seed": args.seed,
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
    }
    OUTPUTS.mkdir(exist_ok=True)
    target = OUTPUTS / "metrics.json"
    target.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"Wrote {target}")


if __name__ == "__main__":
    main()
