"""The accounts service: register, issue tokens, look users up."""
import logging

from nameko.dependency_providers import Config

from contracts.accounts import CONTRACT
from contracts.errors import Conflict, InvalidCredentials
from mesh.auth.passwords import DUMMY_HASH, Passwords
from mesh.auth.tokens import TokenKeys
from mesh.messaging.rpc import rpc
from mesh.runtime.lifecycle import on_start
from mesh.runtime.service_base import MeshService
from services.accounts import domain
from services.accounts.models import Base

log = logging.getLogger(__name__)


class AccountsService(MeshService, contract=CONTRACT, models=Base):
    config = Config()
    tokens = TokenKeys()
    passwords = Passwords()

    @rpc
    def register(self, email, password, name):
        # a taken email is refused before any hashing: it costs the caller nothing
        if domain.find_by_email(self.db.session, email) is not None:
            raise Conflict(f"email {email} is already registered")
        self.db.session.rollback()  # no read stays open while the hash is computed
        user = domain.create_user(self.db.session, self.outbox, email, name,
                                  self.passwords.hash(password))
        return user.to_dict()

    @rpc
    def issue_token(self, email, password):
        user = domain.find_by_email(self.db.session, email)
        # verify even for an unknown email, so every failure takes as long, and a
        # disabled account is told apart from a wrong password by no one
        matches = self.passwords.verify(user.password_hash if user else DUMMY_HASH, password)
        if user is None or not matches or user.status != domain.ACTIVE:
            raise InvalidCredentials("wrong email or password")
        return {"access_token": self.tokens.issue(user.id, user.role, user.token_version),
                "token_type": "bearer", "expires_in": self.tokens.ttl}

    @rpc
    def get_user(self, user_id):
        return domain.get_user(self.db.session, user_id).to_dict()

    @rpc
    def get_access(self, user_id):
        return domain.get_user(self.db.session, user_id).access()

    @rpc
    def change_password(self, user_id, current_password, new_password):
        user = domain.get_user(self.db.session, user_id)
        known_hash, active = user.password_hash, user.status == domain.ACTIVE
        self.db.session.rollback()  # no read stays open while the hashes are worked
        if not self.passwords.verify(known_hash, current_password) or not active:
            raise InvalidCredentials("wrong password")
        domain.change_password(self.db.session, self.outbox, user_id, known_hash,
                               self.passwords.hash(new_password))
        return {}

    @rpc
    def disable_user(self, user_id, actor_id):
        return domain.set_status(self.db.session, self.outbox, user_id, actor_id,
                                 domain.DISABLED).to_dict()

    @rpc
    def enable_user(self, user_id, actor_id):
        return domain.set_status(self.db.session, self.outbox, user_id, actor_id,
                                 domain.ACTIVE).to_dict()

    @rpc
    def delete_user(self, user_id, actor_id):
        domain.delete_user(self.db.session, self.outbox, user_id, actor_id)
        return {}

    @on_start
    def ensure_admin(self):
        email = self.config.get("MESH_ADMIN_EMAIL")
        password = self.config.get("MESH_ADMIN_PASSWORD")
        if email and password and domain.ensure_admin(
                self.db.session, email, lambda: self.passwords.hash(password)):
            log.info("created the admin account %s", email)
