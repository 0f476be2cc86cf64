"""The keyword arguments each allow-listed estimator takes, and which of them can be a search
budget: admission checks a search space against them without importing scikit-learn, XGBoost or
LightGBM (the API layer stays free of them). tests/api/test_estimator_params.py keeps the table
equal to the real classes (their `__init__` signature, or `get_params()` for XGBoost and
LightGBM, exactly as the trainer checks spec.model.params)."""

from __future__ import annotations

__all__ = ["AUTO", "BUDGET_PARAMS", "ESTIMATOR_PARAMS", "ROWS", "WORK_PARAMS"]

_FORESTS = (
    "bootstrap ccp_alpha criterion max_depth max_features max_leaf_nodes max_samples "
    "min_impurity_decrease min_samples_leaf min_samples_split min_weight_fraction_leaf "
    "monotonic_cst n_estimators n_jobs oob_score random_state verbose warm_start"
)
_GRADIENT_BOOSTING = (
    "ccp_alpha criterion init learning_rate loss max_depth max_features max_leaf_nodes "
    "min_impurity_decrease min_samples_leaf min_samples_split min_weight_fraction_leaf "
    "n_estimators n_iter_no_change random_state subsample tol validation_fraction verbose "
    "warm_start"
)
_HIST_GRADIENT_BOOSTING = (
    "categorical_features early_stopping interaction_cst l2_regularization learning_rate loss "
    "max_bins max_depth max_features max_iter max_leaf_nodes min_samples_leaf monotonic_cst "
    "n_iter_no_change random_state scoring tol validation_fraction verbose warm_start"
)
_XGBOOST = (
    "base_score booster callbacks colsample_bylevel colsample_bynode colsample_bytree device "
    "early_stopping_rounds enable_categorical eval_metric feature_types feature_weights gamma "
    "grow_policy importance_type interaction_constraints learning_rate max_bin "
    "max_cat_threshold max_cat_to_onehot max_delta_step max_depth max_leaves min_child_weight "
    "missing monotone_constraints multi_strategy n_estimators n_jobs num_parallel_tree "
    "objective random_state reg_alpha reg_lambda sampling_method scale_pos_weight subsample "
    "tree_method validate_parameters verbosity"
)
_LIGHTGBM = (
    "boosting_type class_weight colsample_bytree importance_type learning_rate max_depth "
    "min_child_samples min_child_weight min_split_gain n_estimators n_jobs num_leaves "
    "objective random_state reg_alpha reg_lambda subsample subsample_for_bin subsample_freq"
)

# estimator -> the names spec.model.params (and a search candidate's params) may use.
ESTIMATOR_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(sorted(words.split()))
    for name, words in {
        "LogisticRegression": "C class_weight dual fit_intercept intercept_scaling l1_ratio "
        "max_iter n_jobs penalty random_state solver tol verbose warm_start",
        "LinearRegression": "copy_X fit_intercept n_jobs positive tol",
        "Ridge": "alpha copy_X fit_intercept max_iter positive random_state solver tol",
        "Lasso": "alpha copy_X fit_intercept max_iter positive precompute random_state "
        "selection tol warm_start",
        "ElasticNet": "alpha copy_X fit_intercept l1_ratio max_iter positive precompute "
        "random_state selection tol warm_start",
        "RandomForestClassifier": f"{_FORESTS} class_weight",
        "ExtraTreesClassifier": f"{_FORESTS} class_weight",
        "RandomForestRegressor": _FORESTS,
        "ExtraTreesRegressor": _FORESTS,
        "GradientBoostingClassifier": _GRADIENT_BOOSTING,
        "GradientBoostingRegressor": f"{_GRADIENT_BOOSTING} alpha",
        "HistGradientBoostingClassifier": f"{_HIST_GRADIENT_BOOSTING} class_weight",
        "HistGradientBoostingRegressor": f"{_HIST_GRADIENT_BOOSTING} quantile",
        "XGBClassifier": _XGBOOST,
        "XGBRegressor": _XGBOOST,
        "LGBMClassifier": _LIGHTGBM,
        "LGBMRegressor": _LIGHTGBM,
        "TabularMLP": "batchSize dropout epochs hiddenSizes lr patience weightDecay",
    }.items()
}

# `rows` (a seeded sample of the training rows) is a budget every estimator can use, and so is
# `auto`: the share value/max of the training rows and of the estimator's own iterations
# (WORK_PARAMS below), a miniature of the trial.
ROWS = "rows"
AUTO = "auto"
# estimator -> its parameter that counts training work (iterations, trees, epochs): a halving
# budget beside rows. The linear models' max_iter only caps a solver's convergence, so they
# are left out: a smaller value changes the answer, not the cost of finding it.
BUDGET_PARAMS: dict[str, tuple[str, ...]] = {
    "LogisticRegression": ("max_iter",),
    "LinearRegression": (),
    "Ridge": (),
    "Lasso": (),
    "ElasticNet": (),
    "RandomForestClassifier": ("n_estimators",),
    "ExtraTreesClassifier": ("n_estimators",),
    "RandomForestRegressor": ("n_estimators",),
    "ExtraTreesRegressor": ("n_estimators",),
    "GradientBoostingClassifier": ("n_estimators",),
    "GradientBoostingRegressor": ("n_estimators",),
    "HistGradientBoostingClassifier": ("max_iter",),
    "HistGradientBoostingRegressor": ("max_iter",),
    "XGBClassifier": ("n_estimators",),
    "XGBRegressor": ("n_estimators",),
    "LGBMClassifier": ("n_estimators",),
    "LGBMRegressor": ("n_estimators",),
    "TabularMLP": ("epochs",),
}

# estimator -> (its parameter that counts training work, that parameter's default): what the
# `auto` halving budget scales beside the rows (the trial's own value, or this default, times
# the rung's share). An estimator not here gets the share of the rows only.
WORK_PARAMS: dict[str, tuple[str, int]] = {
    "RandomForestClassifier": ("n_estimators", 100),
    "ExtraTreesClassifier": ("n_estimators", 100),
    "RandomForestRegressor": ("n_estimators", 100),
    "ExtraTreesRegressor": ("n_estimators", 100),
    "GradientBoostingClassifier": ("n_estimators", 100),
    "GradientBoostingRegressor": ("n_estimators", 100),
    "HistGradientBoostingClassifier": ("max_iter", 100),
    "HistGradientBoostingRegressor": ("max_iter", 100),
    "XGBClassifier": ("n_estimators", 100),  # XGBoost's None: 100 boosting rounds
    "XGBRegressor": ("n_estimators", 100),
    "LGBMClassifier": ("n_estimators", 100),
    "LGBMRegressor": ("n_estimators", 100),
    "TabularMLP": ("epochs", 20),
}
