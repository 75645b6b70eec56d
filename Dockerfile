# The doraflow image: one static binary on a small Alpine base, run as a
# non-root user. Alpine rather than distroless for busybox's wget, which the
# HEALTHCHECK needs. Build from the repository root:
#   docker build -t doraflow:local .
# Release builds should pin both bases by digest (@sha256:…) as well.

FROM golang:1.26.8-alpine3.23 AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary, independent of the final image's libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/doraflow ./cmd/doraflow

FROM alpine:3.23
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="doraflow" \
      org.opencontainers.image.description="Live DORA metrics from webhooks: collectors, NATS JetStream, stream processor, ClickHouse" \
      org.opencontainers.image.source="https://github.com/doraflow/doraflow" \
      org.opencontainers.image.url="https://github.com/doraflow/doraflow" \
      org.opencontainers.image.documentation="https://github.com/doraflow/doraflow#install" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A numeric user, so that Kubernetes' runAsNonRoot can verify it; its home
# is the data directory (the embedded JetStream's files under --role all,
# and the dashboards generate --out volume in compose).
RUN addgroup -S -g 10001 doraflow \
 && adduser -S -D -H -u 10001 -G doraflow -h /var/lib/doraflow doraflow \
 && mkdir -p /var/lib/doraflow \
 && chown 10001:10001 /var/lib/doraflow
COPY --from=build /out/doraflow /usr/local/bin/doraflow
ENV DORAFLOW_DATA_DIR=/var/lib/doraflow
WORKDIR /var/lib/doraflow
USER 10001:10001
# DORAFLOW_LISTEN's default; a deployment that changes it changes its own
# health check as well.
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["doraflow"]
CMD ["serve"]
