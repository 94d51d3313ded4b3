# syntax=docker/dockerfile:1
# Build:  docker build -t stockhold .      (or: docker compose up --build)

FROM rust:1-bookworm AS builder
WORKDIR /src
# Everything except what .dockerignore drops: lua/ and migrations/ are compiled
# into the binary (include_str!, sqlx::migrate!).
COPY . .
# The cache mount keeps downloaded crates between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home stockhold
COPY --from=builder /src/target/release/stockhold /usr/local/bin/stockhold
COPY configuration /app/configuration
WORKDIR /app
ENV STOCKHOLD_CONFIG_DIR=/app/configuration
USER stockhold
EXPOSE 8080
CMD ["stockhold", "serve"]
