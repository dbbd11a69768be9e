"""advviz app entry: ``advviz app`` or ``streamlit run app/streamlit_app.py`` (127.0.0.1 by default).

st.navigation over the pages in ``views/``; the shared sidebar is drawn here, before the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # appkit/ lives beside this file
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402

from appkit import sidebar  # noqa: E402

st.set_page_config(page_title="advviz", page_icon=":material/explore:", layout="wide")

PAGES = [
    st.Page("views/models.py", title="Models", icon=":material/inventory_2:", default=True),
    st.Page("views/sentence.py", title="Which words move", icon=":material/text_fields:", url_path="words"),
    st.Page("views/atlas.py", title="Word atlas", icon=":material/map:"),
    st.Page("views/reconstructions.py", title="Reconstructions", icon=":material/autorenew:"),
    st.Page("views/space.py", title="Representation space", icon=":material/scatter_plot:"),
    st.Page("views/robustness.py", title="Robustness", icon=":material/shield:"),
]

page = st.navigation(PAGES)
sidebar.render()
page.run()
