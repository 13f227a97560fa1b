"""The Streamlit script of the Ballast Workbench (served by `python -m ballast_ui`)."""

from ballast_ui.app import main

main()
