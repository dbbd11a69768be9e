"""The advviz Streamlit app, installed with the wheel as the package ``advviz_app`` (see pyproject.toml).

Streamlit runs ``streamlit_app.py`` as a file (``advviz app`` finds it); nothing imports this package.
"""
