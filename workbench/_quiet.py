"""Silence warnings that say nothing to a workbench user, before the modules that raise them load."""

import warnings

from tqdm import TqdmWarning

# optuna imports tqdm.auto, which warns in every headless kernel that ipywidgets is missing.
warnings.filterwarnings("ignore", category=TqdmWarning)
