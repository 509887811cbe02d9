# graceful's image: the release binary on distroless (glibc, CA certificates, a nonroot
# user), nothing else. e2e/graceful-image assembles the same image without a container
# engine: keep the binary path, the user and the entrypoint in step with it.
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin graceful

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/graceful /graceful
# distroless's nonroot; the Deployment runs as the same numbers.
USER 65532:65532
ENTRYPOINT ["/graceful", "run"]
