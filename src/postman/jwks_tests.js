pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the answer is a key set', function () {
    pm.expect(body.keys).to.be.an('array').that.is.not.empty;
    body.keys.forEach(function (key) {
        pm.expect(key.kid).to.be.a('string').and.not.empty;
        pm.expect(key.alg).to.be.a('string').and.not.empty;
        pm.expect(key.kty).to.be.oneOf(['EC', 'OKP', 'RSA']);
    });
});
