"""The Workbench pages (each a `Page` subclass rendered by the frame)."""

from ballast_ui.pages.admin import AdminPage
from ballast_ui.pages.analysis import AnalysisPage
from ballast_ui.pages.audit import AuditPage
from ballast_ui.pages.data import DataPage
from ballast_ui.pages.home import HomePage
from ballast_ui.pages.jobs import JobsPage
from ballast_ui.pages.projects import ProjectsPage
from ballast_ui.pages.settings import SettingsPage
from ballast_ui.pages.webhooks import WebhooksPage

ALL_PAGES = (
    HomePage(),
    ProjectsPage(),
    DataPage(),
    AnalysisPage(),
    JobsPage(),
    AuditPage(),
    AdminPage(),
    WebhooksPage(),
    SettingsPage(),
)

__all__ = [
    "ALL_PAGES",
    "AdminPage",
    "AnalysisPage",
    "AuditPage",
    "DataPage",
    "HomePage",
    "JobsPage",
    "ProjectsPage",
    "SettingsPage",
    "WebhooksPage",
]
