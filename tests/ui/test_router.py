"""Router: URL ⇄ state, navigation, history, guards."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from ballast_ui.pages.projects import ProjectsPage
from ballast_ui.router import Page, Router


def router_app() -> None:
    import streamlit as st

    from ballast_ui.router import Page, Router
    from tests.ui.fakes import install_ctx

    class Home(Page):
        name = "home"
        title = "Home"

    class Projects(Page):
        name = "projects"
        title = "Projects"
        permission = "projects:read"
        params = ("id", "p")

    class Admin(Page):
        name = "admin"
        title = "Admin"
        permission = "users:write"

    perms = st.session_state.get("perms", ["projects:read"])
    ctx = install_ctx(perms)
    r = Router(
        [Home(), Projects(), Admin()],
        default="home",
        history_navigation=lambda: bool(st.session_state.pop("back", False)),
    )
    r.sync_from_url()
    st.text(f"view={r.resolve(ctx)} params={sorted(r.params.items())}")
    st.text("nav=" + ",".join(p.name for p in r.visible(ctx)))
    st.button("open", on_click=r.navigate, args=("projects", {"id": "42", "junk": "x"}))
    st.button("home", on_click=r.navigate, args=("home",))
    st.button("filter", on_click=r.update, args=("projects", {"p": "2"}))
    st.text(f"history={len(r.history)}")
    st.text(f"kept={sorted(r.state.params_by_page.get('projects', {}).items())}")


def make() -> AppTest:
    return AppTest.from_function(router_app, default_timeout=10)


def test_deep_link_sets_page_and_params() -> None:
    at = make()
    at.query_params["page"] = "projects"
    at.query_params["id"] = "7"
    at.run()
    assert not at.exception
    assert at.text[0].value == "view=projects params=[('id', '7')]"


def test_empty_url_is_the_default_page_and_written_back() -> None:
    at = make().run()
    assert at.text[0].value == "view=home params=[]"
    assert at.query_params["page"] == "home"


def test_navigate_writes_url_and_history_and_drops_unknown_params() -> None:
    at = make().run()
    at.button[0].click().run()
    assert at.text[0].value == "view=projects params=[('id', '42')]"
    assert at.query_params["page"] == "projects"
    assert at.query_params["id"] == "42"
    assert "junk" not in at.query_params
    assert at.text[2].value == "history=1"
    at.button[1].click().run()
    assert at.text[0].value == "view=home params=[]"
    assert at.text[2].value == "history=2"


def test_back_forward_follows_the_url() -> None:
    at = make().run()
    at.button[0].click().run()
    # The browser went back: Streamlit reruns with the previous query string.
    at.query_params.clear()
    at.query_params["page"] = "home"
    at.session_state["back"] = True
    at.run()
    assert at.text[0].value == "view=home params=[]"


def test_a_stale_query_string_does_not_move_the_user() -> None:
    at = make().run()
    at.button[0].click().run()
    # A rerun carrying the URL of a page already left (Streamlit sends the last query
    # string it knew): the state stays, and the URL is written from it again.
    at.query_params.clear()
    at.query_params["page"] = "home"
    at.run()
    assert at.text[0].value == "view=projects params=[('id', '42')]"
    assert at.query_params["page"] == "projects"


def test_forbidden_pages_are_absent_and_denied_by_link() -> None:
    at = make()
    at.query_params["page"] = "admin"
    at.run()
    assert at.text[1].value == "nav=home,projects"
    assert at.text[0].value.startswith("view=denied")


def test_admin_sees_admin() -> None:
    at = make()
    at.session_state["perms"] = ["projects:read", "users:write"]
    at.query_params["page"] = "admin"
    at.run()
    assert at.text[1].value == "nav=home,projects,admin"
    assert at.text[0].value.startswith("view=admin")


def test_unknown_page_is_not_found() -> None:
    at = make()
    at.query_params["page"] = "nope"
    at.run()
    assert at.text[0].value.startswith("view=notfound")


def test_a_hidden_pages_widget_change_keeps_params_but_does_not_switch() -> None:
    at = make().run()
    at.button[2].click().run()  # a projects widget reports a change while home is shown
    assert at.text[0].value == "view=home params=[]"
    assert at.text[2].value == "history=0"
    assert at.text[3].value == "kept=[('p', '2')]"
    at.button[0].click().run()  # on projects, the same change navigates
    at.button[2].click().run()
    assert at.text[0].value == "view=projects params=[('p', '2')]"


def test_view_of_a_page() -> None:
    class Plain(Page):
        name = "plain"
        title = "Plain"

    state: dict[str, object] = {}
    r = Router([Plain(), ProjectsPage()], default="plain", state=state)
    projects = ProjectsPage()
    # One view unless the page says otherwise; the projects list, or one project.
    assert Plain().view(r) == ""
    assert projects.view(r) == ""
    r.state.page, r.state.params = "projects", {"id": "7"}
    assert projects.view(r) == "7"
    # Shown or not, the page draws the project it had last.
    r.state.page, r.state.params = "plain", {}
    r.state.params_by_page["projects"] = {"id": "8", "p": "2"}
    assert projects.view(r) == "8"
    r.state.params_by_page["projects"] = {"p": "2"}
    assert projects.view(r) == ""
