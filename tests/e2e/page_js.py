"""JavaScript the browser tests evaluate in the page (one copy for every test module)."""

# The value shown by the st.metric labelled ``label``, or null while there is none:
# page.evaluate(METRIC, "Labels"), or inside page.wait_for_function as `(METRIC)('Labels')`.
METRIC = """(label) => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    const l = m.querySelector('[data-testid="stMetricLabel"]');
    if (l && l.innerText.trim() === label)
      return m.querySelector('[data-testid="stMetricValue"]').innerText.trim();
  }
  return null;
}"""
