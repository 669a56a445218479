"""Typed step configuration read from params.yaml (keyed by stage, then task): one module per stage's schema
(data, models, train, tune, release, cluster) and `resolve`, the one path from params.yaml to a step's config.

Config flows one way: params.yaml -> these models -> step function arguments -> MLflow params. Every model forbids
unknown keys, so a typo fails loudly with the field's full name. Defaults live here and nowhere else.
Imports: components.core only.
"""

# ruff: noqa: F401  (the package's public names, re-exported)
from components.config.base import (
    IMAGENET_LITE0,
    MINILM,
    MINILM_MAX_LEN,
    MINILM_MODEL,
    MODEL_TAGS,
    ConfigError,
    _field_path,
    _Strict,
    validate,
)
from components.config.cluster import (
    Cpu,
    DistributedConfig,
    Duration,
    KubeflowConfig,
    Memory,
    Resources,
)
from components.config.data import (
    AugmentConfig,
    LMConfig,
    PrepareConfig,
    SeriesConfig,
    TextConfig,
)
from components.config.models import (
    ENCODER_ONLY,
    AnyModel,
    CNNConfig,
    EfficientNetLiteConfig,
    ModelConfig,
    RNNConfig,
    TorchvisionConfig,
    TransformerConfig,
    _model_name,
)
from components.config.release import (
    ExportConfig,
    RegisterConfig,
)
from components.config.resolve import (
    PARAMS_FILE,
    STAGE_MODELS,
    STAGES,
    _flatten,
    apply_overrides,
    apply_point,
    check_run_overrides,
    flatten,
    kubeflow_config,
    load_params,
    resolve,
    resolve_experiment,
    resolve_raw,
    run_overrides,
    stage_config,
    step_config,
    step_raw,
    task_block,
    tasks,
    tune_knobs,
    tuned_config,
)
from components.config.train import (
    EarlyStoppingConfig,
    GradientConfig,
    SchedulerConfig,
    TrainConfig,
)
from components.config.tune import (
    MULTI_OBJECTIVE_SAMPLERS,
    ParamSpace,
    TuneConfig,
)
