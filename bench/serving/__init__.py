"""Helpers of the serving benchmark (bench/serving_bench.py): the model, the two servers, wrk."""
