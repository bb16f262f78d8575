# rollguard worker / CLI image.
#   docker build -t rollguard .
#   docker run --rm -e ROLLGUARD_BOOTSTRAP=host:9092 rollguard worker --spec /app/examples/support-reply.yaml
#
# Two stages: wheels are built with a compiler available (for platforms where a dependency has
# no prebuilt wheel, e.g. arm64), the runtime stage installs them without build tools.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .
# /app/examples in the runtime image: examples/ if the repo has it, plus the packaged specs
# (rollguard/specs/*.yaml, e.g. support-reply.yaml) so the compose worker's --spec path exists.
RUN mkdir -p /examples \
 && if [ -d examples ]; then cp -r examples/. /examples/; fi \
 && for f in rollguard/specs/*.yaml; do [ -e "$f" ] && cp -n "$f" /examples/ || true; done

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ROLLGUARD_DATA_DIR=/var/lib/rollguard
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels rollguard \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rollguard \
 && mkdir -p /app /var/lib/rollguard \
 && chown rollguard:rollguard /var/lib/rollguard
WORKDIR /app
COPY --from=build /examples/ /app/examples/
USER rollguard
ENTRYPOINT ["rollguard"]
CMD ["--help"]
