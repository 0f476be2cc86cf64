# The server image for models of examples/byo/xgboost: Kubeloop's server plus the predictor
# class. The server imports a custom predictor only if it is listed here.
#   docker build -f server.Dockerfile -t registry.example.com/team/churn-server:1.0 .
# and name it in the ModelDeployment (deployment.yaml: spec.image).
FROM ghcr.io/kubeloop/server:0.1.0
COPY churn_features.py /opt/predictors/
ENV PYTHONPATH=/opt/predictors \
    KUBELOOP_CUSTOM_PREDICTORS=churn_features:ChurnPredictor
