# syntax=docker/dockerfile:1
# The image the Helm chart (helm/agentops) runs: the five service binaries on PATH, the ONNX
# Runtime library the scorer loads (scorer.onnxruntime_path / ORT_DYLIB_PATH) and the committed
# model set (scorer.model_dir).
#
#   docker build -t agentops-pipeline:0.1.0 .
#
# Paths the chart relies on: /usr/local/bin/{ingest,aggregator,scorer,auth-api,alerter},
# /opt/onnxruntime/libonnxruntime.so, /opt/agentops/models, /bin/sh (hook jobs), user 10001.
# No AGENTOPS__* variable is set here: it would override the chart's config.toml.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- the five binaries, release build ------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# What rdkafka's bundled librdkafka build needs (as scripts/install-deps.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev \
      libcurl4-openssl-dev zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ingest -p aggregator -p scorer -p auth-api -p alerter --bins \
 && mkdir -p /out \
 && cp target/release/ingest target/release/aggregator target/release/scorer target/release/auth-api \
      target/release/alerter /out/

# --- the ONNX Runtime shared library, from the PyPI wheel (version: scripts/lib.sh) --------
FROM python:3.11-slim-${DEBIAN_RELEASE} AS onnxruntime
WORKDIR /src
COPY scripts/lib.sh scripts/install-onnxruntime.sh scripts/
RUN AGENTOPS_CACHE=/cache bash scripts/install-onnxruntime.sh \
 && mkdir -p /out \
 && cp -L /cache/onnxruntime-*/libonnxruntime.so /out/libonnxruntime.so

# --- runtime -----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
ARG APP_VERSION=0.1.0
LABEL org.opencontainers.image.title="agentops-pipeline" \
      org.opencontainers.image.description="agentops: ingest gateway, aggregator, scorer, auth-api, alerter" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# libssl3/zlib1g: the binaries; libstdc++6: libonnxruntime.so; ca-certificates: https registry.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agentops \
 && useradd --system --uid 10001 --gid agentops --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin agentops
COPY --from=build /out/ /usr/local/bin/
COPY --from=onnxruntime /out/libonnxruntime.so /opt/onnxruntime/libonnxruntime.so
COPY scorer/models/ /opt/agentops/models/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so
WORKDIR /opt/agentops
USER 10001:10001
# The chart sets the command per service (`ingest serve`, `aggregator run`, `scorer run`,
# `auth-api serve`, `alerter run`); the binaries exec as PID 1 and handle SIGTERM themselves.
CMD ["ingest", "--help"]
