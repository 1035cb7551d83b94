"""The engine: loading, generation, scoring, few-shot, evaluation, fine-tuning and adapters.

Nothing under this package imports IPython, ipywidgets or matplotlib, so the same code runs in a
notebook, a script, a test or a ``torchrun`` worker. Result objects render themselves as HTML
through ``ftpe_magics.display``, imported only when something is rendered.
"""

from .adapters.registry import Adapter, AdapterRegistry
from .config import Ftpe
from .errors import FtpeError
from .evaluation.comparison import CompareResult
from .evaluation.evaluator import ConditionResult
from .finetune.observers import TrainingObserver, TrainingPlan
from .finetune.options import FinetuneOptions
from .inference.generation import GenerationSettings
from .model.loading import LoadedModel
from .options import CompareOptions, DataOptions, EvalOptions, FewShotOptions
from .prompting.prompt_result import PromptResult
from .run_log import RunLog
from .session import Session, get_session

__all__ = ["Adapter", "AdapterRegistry", "CompareOptions", "CompareResult", "ConditionResult", "DataOptions",
           "EvalOptions", "FewShotOptions", "FinetuneOptions", "Ftpe", "FtpeError", "GenerationSettings",
           "LoadedModel", "PromptResult", "RunLog", "Session", "TrainingObserver", "TrainingPlan", "get_session"]
