"""Ballast Streamlit UI."""
