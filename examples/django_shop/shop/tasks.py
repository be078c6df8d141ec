"""The shop's tasks, found by tasktrail's app (autodiscovered from INSTALLED_APPS)."""

from django.db import transaction

from shop.models import Website
from tasktrail.contrib.django import app


@app.task(name="refresh")
def refresh(website_id: int) -> str:
    """Reads the model in the worker's forked process, and writes to it in an atomic
    block that also enqueues a follow-up (both or neither)."""
    website = Website.objects.get(pk=website_id)
    with transaction.atomic():
        Website.objects.filter(pk=website_id).update(comments=len(website.url))
        count.enqueue(website_id, ref=("website", website_id))
    return website.url


@app.task(name="count")
def count(website_id: int) -> int:
    comments = Website.objects.get(pk=website_id).comments
    assert comments is not None
    return comments
