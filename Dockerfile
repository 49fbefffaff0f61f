# fleetsink's image: a release build, then a small runtime with a non-root user.
# docker build -t fleetsink .   (docker-compose.yml builds it too)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fleetsink

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fleetsink
COPY --from=build /src/target/release/fleetsink /usr/local/bin/fleetsink
COPY config/fleetsink.example.toml /etc/fleetsink/fleetsink.toml
USER fleetsink
# MQTT (embedded mode), MQTT over TLS, admin HTTP.
EXPOSE 1883 8883 8080
ENTRYPOINT ["/usr/local/bin/fleetsink"]
CMD ["--config", "/etc/fleetsink/fleetsink.toml", "serve"]
