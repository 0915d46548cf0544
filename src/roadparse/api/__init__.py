"""The Python API: a run as an object, a trained model that labels images, and exports.

A run on your own frames, from Python or a notebook:

```python
import roadparse

run = roadparse.Run("roadparse.yaml")
step = run.until_review()      # roi → masks → embed → cluster
print(step.command)            # roadparse review WORKDIR: name the clusters, Save
result = run.resume()          # pseudo-labels → self-training (needs the merge map)
model = roadparse.load_model(result.model_dir)
prediction = model.predict("frame.jpg")
model.predict_files(["frames/"], run.workdir / "predictions")
roadparse.export(run.workdir / "predictions", out="layers")
```

Every stage method resumes: a stage that already finished with the same settings and
inputs is not run again, and an interrupted one continues where it stopped.
"""

from roadparse.api.exports import ExportFormat, ExportResult, export
from roadparse.api.model import Model, Prediction, load_model, resolve_model_path
from roadparse.api.run import ReviewStep, Run, RunResult
from roadparse.pipeline import MergeMapMissing

__all__ = [
    "ExportFormat",
    "ExportResult",
    "MergeMapMissing",
    "Model",
    "Prediction",
    "ReviewStep",
    "Run",
    "RunResult",
    "export",
    "load_model",
    "resolve_model_path",
]
