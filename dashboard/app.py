"""Streamlit entry point. The per-ticker dashboard is built on this page (issue: analytics
and dashboard); until then it shows which platform services answer."""

from __future__ import annotations

import streamlit as st

from lakehouse.health import check_services
from lakehouse.settings import load_settings

st.set_page_config(page_title="Streaming lakehouse", layout="wide")
st.title("Streaming lakehouse")
settings = load_settings()
st.caption(
    f"Airflow: {settings.airflow_url} · S3: {settings.s3_endpoint} · "
    f"Kafka: {settings.kafka_bootstrap}"
)
results = check_services(settings)
st.subheader("Platform services")
st.dataframe(
    [{"service": name, "healthy": "yes" if ok else "no"} for name, ok in results.items()],
    width="stretch",
    hide_index=True,
)
st.info("Per-ticker trends appear here once the trades pipeline writes to the lake.")
