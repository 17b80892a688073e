"""The tabular family: records of numeric and categorical features, standardised and one-hot
encoded with training-split statistics, read by an MLP; classification, regression, and survival
(right-censored time to event, a Cox risk score). Compared with logistic regression, ridge
regression or a Cox proportional-hazards model on the same features."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from biomed.conformal import ConformalRequest
from biomed.family import Baseline, Resolution, TaskDef
from biomed.models import head_labels
from biomed.spec_sections import DataSection, ModelSection, TrainingSection, offering

FeatureValue = float | int | bool | str | None


@dataclass(frozen=True)
class MLPBackbone:
    """A multilayer perceptron over preprocessed tabular features (mlp.py)."""

    hidden_sizes: tuple[int, ...]
    description: str


BACKBONES = {"mlp": MLPBackbone(hidden_sizes=(128, 64), description="MLP 128-64 with LayerNorm, GELU and dropout, for tabular and survival tasks")}


class TabularData(DataSection):
    numeric_columns: list[str] = Field(default_factory=list, description="Tabular and survival tasks: numeric feature columns, standardised with training-split statistics (missing values get the training mean).")
    categorical_columns: list[str] = Field(default_factory=list, description="Tabular and survival tasks: categorical feature columns, one-hot over the categories seen in training.")
    time_column: str | None = Field(default=None, description="Survival tasks: time to the event or to censoring (non-negative).")
    event_column: str | None = Field(default=None, description="Survival tasks: 1 (or true) if the event was observed, 0 if the record is censored.")

    @model_validator(mode="after")
    def _features(self):
        overlap = set(self.numeric_columns) & set(self.categorical_columns)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are listed as both numeric and categorical")
        return self


class MLPModel(ModelSection):
    hidden_sizes: list[int] | None = Field(default=None, min_length=1, description="MLP backbone (tabular and survival tasks): widths of the hidden layers. Omitted: the preset's [128, 64].")

    @field_validator("hidden_sizes")
    @classmethod
    def _widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 1 <= w <= 65536 for w in value):
            raise ValueError(f"hidden_sizes {value}: every width must be between 1 and 65536")
        return value


class TabularPredictRequest(ConformalRequest):

    inputs: dict[str, FeatureValue] | list[dict[str, FeatureValue]] = Field(
        description="One record or a list: {feature: value} with every feature the model was trained on (numbers for numeric features, strings for categorical ones; null is a missing value).",
        examples=[[{"age": 71, "bmi": 27.4, "gender": "1"}]],
    )


def _features(train_x, test_x, ctx):
    from biomed.families.tabular.features import TabularPreprocessor

    # The model's own preprocessing, fitted on the training split only.
    prep = TabularPreprocessor.fit(train_x, numeric=list(ctx.options["numeric"]), categorical=list(ctx.options["categorical"]))
    return prep.transform(train_x), prep.transform(test_x)


def logistic_regression(train_x, train_y, test_x, ctx):
    from biomed.baselines import fit_proba, logreg

    x_train, x_test = _features(train_x, test_x, ctx)
    return fit_proba(logreg(ctx.num_classes, train_y, ctx.seed), x_train, train_y, x_test, ctx.num_classes)


def ridge(train_x, train_y, test_x, ctx):
    import numpy as np
    from sklearn.linear_model import RidgeCV

    x_train, x_test = _features(train_x, test_x, ctx)
    return RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x_train, train_y).predict(x_test)


def cox_ph(train_x, train_y, test_x, ctx):
    """Cox proportional hazards (scikit-survival), with a small ridge penalty for stability;
    predictions are linear log-risk scores."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x_train, x_test = _features(train_x, test_x, ctx)
    outcome = Surv.from_arrays(event=train_y[:, 1].astype(bool), time=train_y[:, 0])
    return CoxPHSurvivalAnalysis(alpha=0.1).fit(x_train, outcome).predict(x_test)


BASELINES = {
    "classification": Baseline("logistic_regression", logistic_regression),
    "regression": Baseline("ridge", ridge),
    "survival": Baseline("cox_ph", cox_ph),
}


@dataclass(frozen=True, eq=False)
class TabularFamily:
    name: str = "tabular"
    description: str = "Records of numeric and categorical features."
    tasks: tuple[TaskDef, ...] = (
        TaskDef("tabular_classification", "classification", "auroc", "Numeric and categorical features to labels."),
        TaskDef("tabular_regression", "regression", "rmse", "Numeric and categorical features to a real value."),
        TaskDef("survival", "survival", "c_index", "Right-censored time-to-event records to a risk score (Cox partial likelihood)."),
    )
    has_length: bool = False
    split_methods: tuple[str, ...] = ()
    request: type = TabularPredictRequest
    accepts_files: bool = False
    data_section: type = TabularData
    model_section: type = offering(MLPModel, "tabular", BACKBONES)
    training_section: type = TrainingSection
    backbones: ClassVar[dict] = BACKBONES

    def check(self, spec, task) -> None:
        d, m = spec.data, spec.model
        if not (d.numeric_columns or d.categorical_columns):
            raise ValueError(f"task {task.name!r} needs feature columns: give data.numeric_columns and/or data.categorical_columns")
        needs = task.target.columns(d)
        if "time" in needs and (d.time_column is None or d.event_column is None):
            raise ValueError(f"task {task.name!r} needs data.time_column and data.event_column")
        if "time" not in needs and (d.time_column or d.event_column):
            raise ValueError(f"data.time_column/event_column are for survival tasks, not {task.name!r}")
        if m.backbone is None:
            raise ValueError(f"task {task.name!r} trains the 'mlp' backbone, not a Hugging Face folder (model.path or model.pretrained)")

    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        return Resolution()

    def input_columns(self, data) -> dict:
        return {"numeric": tuple(data.numeric_columns), "categorical": tuple(data.categorical_columns)}

    def in_memory_reason(self, spec) -> str | None:
        return None

    def hold_out(self, method, inputs, fraction):
        return None

    def validator(self, spec, *, serving: bool = False):
        from biomed.families.tabular.features import TabularValidator

        return TabularValidator(numeric=tuple(spec.data.numeric_columns), categorical=tuple(spec.data.categorical_columns))

    def load_validator(self, payload: dict):
        from biomed.families.tabular.features import TabularValidator

        return TabularValidator.from_dict(payload)

    def encoder_statistics(self, job):
        from biomed.families.tabular.features import TabularStatistics

        return TabularStatistics(numeric=list(job.spec.data.numeric_columns), categorical=list(job.spec.data.categorical_columns))

    def build_encoder(self, job, *, train_inputs: list, statistics: dict | None):
        from biomed.families.tabular.features import TabularEncoder, TabularPreprocessor

        if statistics is not None:
            return TabularEncoder(TabularPreprocessor.from_dict(statistics["encoder"]))
        d = job.spec.data
        return TabularEncoder(TabularPreprocessor.fit(train_inputs, numeric=list(d.numeric_columns), categorical=list(d.categorical_columns)))

    def load_encoder(self, directory, metadata: dict):
        from biomed.families.tabular.features import TabularEncoder, TabularPreprocessor

        return TabularEncoder(TabularPreprocessor.from_dict(metadata["encoder"]["preprocessor"]))

    def probe_input(self, example):
        return example

    def parse_cli_input(self, text: str):
        # Tabular rows come as JSON objects: {"feature": value, ...}.
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--input for a tabular model must be a JSON object of features: {error}") from None

    def backbone_tokenizer(self, job):
        return None

    def build_model(self, job, *, encoder, labels: list[str], num_outputs: int):
        from biomed.families.tabular.mlp import BiomedMLPConfig, BiomedMLPForSequenceClassification

        dropout = job.spec.training.dropout
        config = BiomedMLPConfig(
            num_features=encoder.num_features, hidden_sizes=job.spec.model.hidden_sizes or list(BACKBONES["mlp"].hidden_sizes),
            dropout=0.1 if dropout is None else dropout, **head_labels(labels, num_outputs),
        )
        return BiomedMLPForSequenceClassification(config)

    def register_auto_classes(self) -> None:
        import biomed.families.tabular.mlp  # noqa: F401  (registers the MLP with the Auto classes)

    def load_model(self, directory):
        from transformers import AutoModelForSequenceClassification

        self.register_auto_classes()
        return AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)

    def explain(self, predictor, raw, validated, *, target_index: int, n_steps: int):
        from biomed.families.tabular.explain import tabular_explanation

        return tabular_explanation(predictor, validated, target_index=target_index, n_steps=n_steps)

    def baseline(self, target) -> Baseline:
        return BASELINES[target.kind]

    def baseline_context(self, spec) -> dict:
        return {"numeric": tuple(spec.data.numeric_columns), "categorical": tuple(spec.data.categorical_columns)}

    def planted(self, num_rows: int, *, seed: int, folder=None, target: str = "classification"):
        from biomed.families.tabular.planted import planted_survival_table, planted_tabular_table

        if target == "survival":
            data = {"numeric_columns": ["x1", "x2", "x3"], "categorical_columns": ["stage"], "time_column": "time", "event_column": "event"}
            return planted_survival_table(num_rows, seed=seed), {"task": {"name": "survival"}, "data": data, "model": {"backbone": "mlp"}}
        data = {"numeric_columns": ["x1", "x2", "x3", "x4"], "categorical_columns": ["site"]}
        return planted_tabular_table(num_rows, seed=seed), {"task": {"name": "tabular_classification"}, "data": data, "model": {"backbone": "mlp"}}


TABULAR = TabularFamily()
