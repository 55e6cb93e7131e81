# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by the HTTP modules (health_probe, notify); module_defaults group/safeship.webapp.http
    # sets them once.
    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds each request may take to connect, and each read of the answer may wait for data. Fractions are
        allowed.
      - A server slower than this fails the attempt with C(no response from host:port within N s (timeout)) (or
        C(no answer within N s (timeout))); attempts the module retries are retried.
    type: float
    default: 10
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https://) URLs. Prefer O(ca_path) for a private CA over turning
        this off; set V(false) only for a test endpoint.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) to trust for C(https://) URLs (for example a self-signed certificate or
        a private CA).
    type: path
"""
