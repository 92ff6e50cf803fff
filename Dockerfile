# bootverify on Debian bookworm: the same set-up as the README's Quick start (ci/setup.sh),
# with the agent's busybox (busybox-static:arm64) and Debian's test kernels baked in so a
# container run needs no downloads. Runs the test suite by default.
FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive BOOTVERIFY_CACHE=/var/cache/bootverify
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \
        ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN ci/setup.sh \
 && .venv/bin/python -c "from bootverify.debpkg import unpacked; unpacked('busybox-static:arm64')"
CMD ["ci/test.sh"]
