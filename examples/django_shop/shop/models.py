from django.db import models


class Website(models.Model):
    url = models.CharField(max_length=200)
    comments = models.IntegerField(null=True)
