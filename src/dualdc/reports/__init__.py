"""Reports: validation findings (policy) and drift, rendered as text, JSON, Markdown, JUnit, SARIF."""
