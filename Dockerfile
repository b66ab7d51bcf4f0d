# Shahr's service and ETL image. pyogrio's wheel bundles GDAL, so no system GDAL is needed.

# The browser libraries the maps and pages use (Leaflet and plugins, the Vazirmatn font), from
# the npm registry with the committed lock, copied as `make assets` does: served by Shahr, no CDN.
FROM node:20-slim AS assets
WORKDIR /assets
COPY assets/package.json assets/package-lock.json assets/vendor.sh ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
    && sh vendor.sh node_modules /vendor

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHAHR_DATA_DIR=/data \
    SHAHR_JOBS_DIRS='["/data/demo"]' \
    SHAHR_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY catalog ./catalog
COPY geo ./geo
COPY etl ./etl
COPY maps ./maps
COPY api ./api
COPY --from=assets /vendor ./api/static/vendor
RUN pip install . && useradd --create-home shahr && mkdir -p /data && chown shahr /data

USER shahr
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["shahr", "serve", "--host", "0.0.0.0", "--port", "8000"]
