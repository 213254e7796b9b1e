FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    REPLYWINDOW_DATABASE_URL=sqlite:////data/replywindow.db

RUN useradd --create-home --uid 10001 replywindow && mkdir /data && chown replywindow /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY receiver receiver
COPY store store
COPY sender sender
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER replywindow
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# `serve` runs the migrations before it serves.
CMD ["replywindow", "serve", "--host", "0.0.0.0", "--port", "8000"]
