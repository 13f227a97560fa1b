"""The Streamlit entry script, shipped inside the package (see `ballast_ui.server`).

It sits in a folder of its own: Streamlit puts the script's folder on ``sys.path`` and
treats a ``pages/`` folder next to it as legacy pages; here there is neither.
"""
