# Coffer: one image for `coffer serve` (a node) and `coffer gateway`.
# Build stage: a release build with the Swift standard library linked in statically.
FROM swift:6.1-bookworm AS build
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product coffer \
    && install -D -m 755 "$(swift build -c release --show-bin-path)/coffer" /out/coffer \
    && strip /out/coffer

# Run stage: glibc and nothing else; the binary needs no Swift runtime.
FROM debian:bookworm-slim
COPY --from=build /out/coffer /usr/local/bin/coffer
RUN mkdir -p /data
WORKDIR /data
# 7777: `coffer serve`; 3000: `coffer gateway`.
EXPOSE 7777 3000
ENTRYPOINT ["/usr/local/bin/coffer"]
CMD ["gateway", "--docker"]
