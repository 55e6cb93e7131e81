# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every database module (db_backup, db_restore, db_check, tenant_migrate);
    # module_defaults group/safeship.webapp.database sets them once.
    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine.
      - V(postgresql) uses C(psql), C(pg_dump) and C(pg_restore); V(mysql) uses C(mariadb)/C(mysql),
        C(mariadb-dump)/C(mysqldump) and works for MySQL and MariaDB; V(sqlite) needs nothing but Python.
    type: str
    required: true
    choices: [postgresql, mysql, sqlite]
  login_host:
    description:
      - Host name or IP address of the database server.
      - When neither O(login_host) nor O(login_unix_socket) is set, the client's default applies
        (the local Unix socket for both PostgreSQL and MySQL).
    type: str
  login_port:
    description:
      - TCP port of the database server. The client's default (5432, 3306) applies when omitted.
    type: int
  login_user:
    description:
      - User to connect as. The client's default (usually the login name of the remote user) applies when omitted.
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - It never appears in a command line, in the module output or in a file readable by others
        (PostgreSQL gets it through the E(PGPASSWORD) environment variable, MySQL through a
        mode 0600 C(--defaults-extra-file) in the module's private temporary directory).
    type: str
  login_unix_socket:
    description:
      - Unix socket to connect through. For PostgreSQL the directory holding the socket
        (for example C(/var/run/postgresql)), for MySQL the socket file itself.
    type: path
  database:
    description:
      - Name of the database; for O(engine=sqlite) the absolute path of the database file.
      - Names may contain letters, digits, V(_), V(-) and V($) (at most 63 characters); anything else is
        refused before any command runs.
    type: str
    required: true
    aliases: [db]
  ssl_mode:
    description:
      - TLS mode of the connection, with libpq's meaning.
      - For MySQL, V(disable) turns TLS off, V(require) turns it on, V(verify-ca) and V(verify-full) also verify
        the server certificate; V(allow) and V(prefer) keep the client's default.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file used to verify the server's certificate.
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - Client certificate file for TLS client authentication.
    type: path
  ssl_key:
    description:
      - Private key file of O(ssl_cert).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a connection before giving up. The client programs take whole seconds, so a fraction is
        rounded up.
    type: float
    default: 10
  client_bin_dir:
    description:
      - Directory holding the client programs (C(psql), C(pg_dump), C(pg_restore) or C(mariadb-dump), ...).
      - Use it when several client versions are installed, for example C(/usr/lib/postgresql/16/bin)
        to dump a PostgreSQL 16 server. By default the programs are looked up in E(PATH).
    type: path
notes:
  - The managed host needs the client programs of the engine (package C(postgresql-client) or
    C(mariadb-client)); no Python database driver is needed.
"""
